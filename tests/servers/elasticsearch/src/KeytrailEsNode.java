// An Elasticsearch node in one JVM for keytrail's integration tests (not a product
// distribution: no x-pack, no security). Built by .ci/setup-servers.sh against the
// classpath of ../pom.xml (server jar + test framework MockNode + netty4 transport).
//
//   java -cp 'lib/*:classes' KeytrailEsNode HOME HTTP_PORT TRANSPORT_PORT CLUSTER_NAME
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.function.Predicate;
import java.util.function.Supplier;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.junit.Test;
import org.junit.runner.JUnitCore;
import org.junit.runner.Result;
import org.junit.runner.RunWith;

import com.carrotsearch.randomizedtesting.RandomizedRunner;
import com.carrotsearch.randomizedtesting.annotations.ThreadLeakScope;
import org.elasticsearch.Build;
import org.elasticsearch.client.internal.node.NodeClient;
import org.elasticsearch.cluster.metadata.IndexNameExpressionResolver;
import org.elasticsearch.cluster.node.DiscoveryNodes;
import org.elasticsearch.common.io.stream.NamedWriteableRegistry;
import org.elasticsearch.common.settings.ClusterSettings;
import org.elasticsearch.common.settings.IndexScopedSettings;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.common.settings.SettingsFilter;
import org.elasticsearch.features.NodeFeature;
import org.elasticsearch.plugins.ActionPlugin;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.rest.BaseRestHandler;
import org.elasticsearch.rest.RestController;
import org.elasticsearch.rest.RestHandler;
import org.elasticsearch.rest.RestRequest;
import org.elasticsearch.rest.RestResponse;
import org.elasticsearch.rest.RestStatus;
import org.elasticsearch.node.MockNode;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

// The test framework's node code asks RandomizedContext for randomness (node ids, ...),
// which only works on threads started under RandomizedRunner: so the node runs as the
// single "test" of this class, and main() just runs that test with JUnit.
@RunWith(RandomizedRunner.class)
@ThreadLeakScope(ThreadLeakScope.Scope.NONE)
public class KeytrailEsNode {
    static String[] ARGS;

    public static void main(String[] args) {
        ARGS = args;
        Result r = JUnitCore.runClasses(KeytrailEsNode.class);
        r.getFailures().forEach(f -> {
            System.err.println("KEYTRAIL_ES_FAILED " + f.getMessage());
            System.err.println(f.getTrace());
        });
        System.exit(r.wasSuccessful() ? 0 : 1);
    }

    @Test
    public void runNode() throws Exception {
        String[] args = ARGS;
        Path home = Path.of(args[0]).toAbsolutePath();
        String httpPort = args[1];
        String transportPort = args[2];
        String clusterName = args.length > 3 ? args[3] : "keytrail-test";
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Files.createDirectories(home.resolve("config"));
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", clusterName)
            .put("node.name", "keytrail-es-1")
            .put("network.host", "127.0.0.1")
            .put("http.port", httpPort)
            .put("transport.port", transportPort)
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("logger.level", "INFO")
            .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
            .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
            .build();
        LogConfigurator.configureESLogging();
        LogConfigurator.configureWithoutConfig(settings);
        Node node = new MockNode(settings, List.of(Netty4Plugin.class, RootPlugin.class), home.resolve("config"), false, () -> {});
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                done.countDown();
            }
        }));
        node.start();
        System.out.println("KEYTRAIL_ES_STARTED http=127.0.0.1:" + httpPort);
        done.await();
    }

    /**
     * GET / and HEAD / (client info() and ping()). Upstream serves them from the
     * rest-root module, which is not published to Maven Central.
     */
    public static class RootPlugin extends Plugin implements ActionPlugin {
        @Override
        public Collection<RestHandler> getRestHandlers(Settings settings, NamedWriteableRegistry registry,
                RestController controller, ClusterSettings clusterSettings, IndexScopedSettings indexScopedSettings,
                SettingsFilter settingsFilter, IndexNameExpressionResolver resolver, Supplier<DiscoveryNodes> nodes,
                Predicate<NodeFeature> clusterSupportsFeature) {
            String body = "{\"name\":\"" + settings.get("node.name") + "\",\"cluster_name\":\""
                + settings.get("cluster.name") + "\",\"cluster_uuid\":\"_na_\",\"version\":{\"number\":\""
                + Build.current().version() + "\",\"build_flavor\":\"default\",\"build_type\":\"jar\","
                + "\"lucene_version\":\"" + org.apache.lucene.util.Version.LATEST + "\","
                + "\"minimum_wire_compatibility_version\":\"7.17.0\","
                + "\"minimum_index_compatibility_version\":\"7.0.0\"},"
                + "\"tagline\":\"You Know, for Search\"}";
            return List.of(new BaseRestHandler() {
                @Override
                public String getName() {
                    return "keytrail_root";
                }

                @Override
                public List<Route> routes() {
                    return List.of(new Route(RestRequest.Method.GET, "/"), new Route(RestRequest.Method.HEAD, "/"));
                }

                @Override
                protected RestChannelConsumer prepareRequest(RestRequest request, NodeClient client) {
                    return channel -> channel.sendResponse(new RestResponse(RestStatus.OK, "application/json", body));
                }
            });
        }
    }
}
