"""A real Elasticsearch 8.x node in one JVM, built from Maven Central artifacts.

`org.elasticsearch:elasticsearch` (server) + `org.elasticsearch.test:framework` (MockNode)
+ `org.elasticsearch.plugin:transport-netty4` (real HTTP), resolved by
.ci/setup-servers.sh into .cache/servers/elasticsearch/lib, with the small main class
tests/servers/elasticsearch/src/KeytrailEsNode.java compiled next to it. What this node
has and lacks (no x-pack, no analysis-common/mapper-extras modules, ...) is written down
in tests/servers/ELASTICSEARCH.md.

Elasticsearch refuses to run as root; when the tests run as root (CI does) the JVM is
started as `nobody` through setpriv, with its base dir handed over to that user.

    es = ElasticsearchServer()
    info = es.start()     # info.url == "http://127.0.0.1:NNNN"
    es.stop(); es.start() # same data dir and ports
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._common import (
    CACHE_DIR,
    LOCALHOST,
    ManagedProcess,
    ServerUnavailable,
    artifact_dir,
    free_ports,
    http_get,
    java_bin,
    versions,
    wait_until,
)

ES_DIR = CACHE_DIR / "elasticsearch"
MAIN_CLASS = "KeytrailEsNode"
RUN_AS = "nobody"


@dataclass(frozen=True)
class ElasticsearchInfo:
    host: str
    port: int
    url: str
    version: str
    base_dir: Path
    log_path: Path


class ElasticsearchServer:
    def __init__(self, base_dir: Path | None = None, *, heap: str = "512m",
                 cluster_name: str = "keytrail-test", start_timeout: float = 180.0) -> None:
        self.base_dir = base_dir or artifact_dir("elasticsearch")
        self.heap = heap
        self.cluster_name = cluster_name
        self.start_timeout = start_timeout
        self.http_port: int | None = None
        self.transport_port: int | None = None
        self.log_path = self.base_dir / "elasticsearch.log"
        self._proc: ManagedProcess | None = None
        self._node_dir: Path | None = None  # home + tmp of the node (kept across restarts)

    @property
    def url(self) -> str:
        if self.http_port is None:
            raise RuntimeError("Elasticsearch not started")
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def info(self) -> ElasticsearchInfo:
        assert self.http_port is not None
        return ElasticsearchInfo(LOCALHOST, self.http_port, self.url,
                                 versions().get("ELASTICSEARCH_VERSION", "?"),
                                 self.base_dir, self.log_path)

    def start(self) -> ElasticsearchInfo:
        if self._proc is not None and self._proc.alive():
            return self.info
        if not (ES_DIR / "classes" / f"{MAIN_CLASS}.class").exists():
            raise ServerUnavailable(
                f"Elasticsearch test node not built in {ES_DIR}: run `make setup` "
                "(resolves the ES server jar, test framework and netty4 from Maven Central)")
        if self.http_port is None:
            self.http_port, self.transport_port = free_ports(2)
        as_root = os.geteuid() == 0
        runtime = _runtime_dir() if as_root else ES_DIR
        if self._node_dir is None:
            self._node_dir = self._make_node_dir(as_root)
        home = self._node_dir / "home"
        tmp = self._node_dir / "tmp"
        for d in (home, tmp):
            d.mkdir(parents=True, exist_ok=True)
        java = java_bin()
        argv = [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}",
            "-Dtests.security.manager=false",
            "-Djava.awt.headless=true",
            "-Dlog4j2.disable.jmx=true",
            "-Dfile.encoding=UTF-8",
            f"-Djava.io.tmpdir={tmp}",
            "-cp", f"{runtime}/lib/*:{runtime}/classes",
            MAIN_CLASS, str(home), str(self.http_port), str(self.transport_port),
            self.cluster_name,
        ]
        if as_root:
            argv = self._as_unprivileged(argv)
        self._proc = ManagedProcess("elasticsearch", argv, self.log_path, cwd=self._node_dir)
        self._proc.start()
        try:
            wait_until(self._ready, timeout=self.start_timeout,
                       what=f"Elasticsearch health yellow/green on {self.url}", procs=[self._proc])
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=30)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def restart(self) -> ElasticsearchInfo:
        self.stop()
        return self.start()

    def _make_node_dir(self, as_root: bool) -> Path:
        """Where the node keeps data: under base_dir, or (as root, when `nobody` can't
        reach base_dir) a private dir in /tmp; base_dir/node points at it."""
        if not as_root or _searchable_by_others(self.base_dir.parent):
            return self.base_dir
        node_dir = Path(tempfile.mkdtemp(prefix="keytrail-es-node-"))
        link = self.base_dir / "node"
        if not link.exists():
            link.symlink_to(node_dir)
        return node_dir

    def _as_unprivileged(self, argv: list[str]) -> list[str]:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise ServerUnavailable("running as root and `setpriv` (util-linux) is missing: "
                                    "Elasticsearch refuses to run as root")
        user = _run_as_user()
        assert self._node_dir is not None
        os.chmod(self._node_dir, 0o755)
        for root, dirs, files in os.walk(self._node_dir):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                "--reset-env", *argv]

    def _ready(self) -> bool:
        status, body = http_get(f"{self.url}/_cluster/health", timeout=5)
        return status == 200 and json.loads(body).get("status") in ("yellow", "green")


def _run_as_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError as e:
        raise ServerUnavailable(f"running as root and no `{RUN_AS}` user to run "
                                "Elasticsearch as") from e


def _searchable_by_others(path: Path) -> bool:
    """Can an unprivileged user walk down to `path` (o+x on it and every ancestor)?"""
    p = path.resolve()
    return all(os.stat(d).st_mode & 0o001 for d in (p, *p.parents))


def _runtime_dir() -> Path:
    """The node's jars as seen by `nobody`: .cache/servers/elasticsearch itself when it is
    reachable, else a copy in /tmp (CI may clone into a root-only directory)."""
    if _searchable_by_others(ES_DIR / "classes"):
        return ES_DIR
    stamp = (ES_DIR / ".stamp").read_text().strip() if (ES_DIR / ".stamp").exists() else "x"
    dst = Path(tempfile.gettempdir()) / f"keytrail-es-runtime-{stamp}"
    if not (dst / ".complete").exists():
        staging = Path(tempfile.mkdtemp(prefix="keytrail-es-runtime-"))
        for sub in ("lib", "classes"):
            shutil.copytree(ES_DIR / sub, staging / sub)
        for root, _dirs, files in os.walk(staging):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        (staging / ".complete").write_text(stamp)
        if dst.exists():
            shutil.rmtree(dst)
        staging.rename(dst)
    return dst
