"""A Flink standalone session cluster on 127.0.0.1, plus Beam's Flink job server.

Flink comes from the `apache-flink` PyPI wheels installed `--no-deps` into
.cache/servers/flink-py (pyflink/bin, pyflink/lib carry a full Flink distribution); the
JobManager and one TaskManager run in the foreground via pyflink/bin/{jobmanager,
taskmanager}.sh start-foreground with a generated config.yaml (every port free, every
bind address 127.0.0.1, 2 slots, modest memory).

The Beam job server is the launcher jar that .ci/setup-servers.sh assembles in
.cache/servers/beam-flink-job-server-<beam>/ (see tests/servers/beam-flink-job-server/
pom.xml for why it is assembled rather than downloaded). apache_beam's FlinkRunner starts
it itself from --flink_job_server_jar, so nothing is downloaded at run time:

    cluster = FlinkCluster()
    info = cluster.start()
    opts = cluster.beam_options     # ["--runner=FlinkRunner", "--flink_master=...", ...]
    opts = cluster.pipeline_options("--job_name=x")   # the same plus extra options
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
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

FLINK_HOME = CACHE_DIR / "flink-py" / "pyflink"

# Flink 1.19 on Java 17 needs these (copied from the distribution's own config.yaml).
_JAVA_OPTS_ALL = " ".join([
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect",
        "java.text", "java.time", "java.util", "java.util.concurrent",
        "java.util.concurrent.atomic", "java.util.concurrent.locks")),
])


def job_server_jar() -> Path:
    """Path of the Beam Flink job-server launcher jar for the pinned Beam release."""
    v = versions()
    beam, flink = v.get("BEAM_VERSION", "?"), v.get("FLINK_VERSION", "?")
    return (CACHE_DIR / f"beam-flink-job-server-{beam}"
            / f"beam-runners-flink-{flink}-job-server-{beam}.jar")


@dataclass(frozen=True)
class FlinkInfo:
    rest_url: str
    flink_master: str          # host:port, what Beam's --flink_master wants
    job_server_jar: Path
    flink_version: str         # minor, e.g. "1.19"
    log_dir: Path
    beam_options: list[str] = field(default_factory=list)


class FlinkCluster:
    def __init__(self, base_dir: Path | None = None, *, slots: int = 2,
                 jm_memory: str = "1024m", tm_memory: str = "1536m",
                 start_timeout: float = 120.0) -> None:
        self.base_dir = base_dir or artifact_dir("flink")
        self.slots = slots
        self.jm_memory = jm_memory
        self.tm_memory = tm_memory
        self.start_timeout = start_timeout
        self.rest_port: int | None = None
        self._procs: list[ManagedProcess] = []

    @property
    def flink_master(self) -> str:
        if self.rest_port is None:
            raise RuntimeError("Flink cluster not started")
        return f"{LOCALHOST}:{self.rest_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.flink_master}"

    @property
    def beam_options(self) -> list[str]:
        """Beam pipeline options that run a Python pipeline on this cluster (a new list)."""
        return self.pipeline_options()

    def pipeline_options(self, *extra: str) -> list[str]:
        """Beam pipeline options that run a Python pipeline on this cluster, plus `extra`.

        LOOPBACK runs the Python SDK workers inside the submitting process (no Docker).
        The job server is the local launcher jar and `java` is given explicitly, so
        Beam downloads nothing at run time.
        """
        v = versions()
        return [
            "--runner=FlinkRunner",
            f"--flink_master={self.flink_master}",
            f"--flink_version={v.get('FLINK_VERSION', '1.19')}",
            f"--flink_job_server_jar={job_server_jar()}",
            f"--job_server_java_launcher={java_bin()}",
            "--environment_type=LOOPBACK",
            "--parallelism=2",
            *extra,
        ]

    def start(self) -> FlinkInfo:
        if self._procs and all(p.alive() for p in self._procs):
            return self.info
        self._check_installed()
        rest, rpc, blob, tm_rpc, tm_data, jm_metrics, tm_metrics = free_ports(7)
        self.rest_port = rest
        conf_dir = self.base_dir / "conf"
        log_dir = self.base_dir / "log"
        tmp_dir = self.base_dir / "tmp"
        for d in (conf_dir, log_dir, tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        settings = {
            "jobmanager.rpc.address": LOCALHOST,
            "jobmanager.rpc.port": rpc,
            "jobmanager.bind-host": LOCALHOST,
            "jobmanager.memory.process.size": self.jm_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": LOCALHOST,
            "taskmanager.bind-host": LOCALHOST,
            "taskmanager.rpc.port": tm_rpc,
            "taskmanager.data.port": tm_data,
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self.tm_memory,
            "parallelism.default": 1,
            "rest.address": LOCALHOST,
            "rest.bind-address": LOCALHOST,
            "rest.port": rest,
            "blob.server.port": blob,
            "io.tmp.dirs": str(tmp_dir),
            "web.tmpdir": str(tmp_dir),
            "env.java.opts.all": _JAVA_OPTS_ALL,
            "env.log.dir": str(log_dir),
            "high-availability.type": "NONE",
            "restart-strategy.type": "none",
        }
        # Flat keys are valid in Flink 1.19's standard-YAML config.yaml; values are JSON
        # scalars, which YAML reads back as the same scalars.
        (conf_dir / "config.yaml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in settings.items()))
        src_conf = FLINK_HOME / "conf"
        for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties",
                     "logback.xml", "logback-console.xml"):
            if (src_conf / name).exists():
                (conf_dir / name).write_bytes((src_conf / name).read_bytes())

        env = dict(os.environ)
        env.update({
            "FLINK_HOME": str(FLINK_HOME),
            "FLINK_CONF_DIR": str(conf_dir),
            "FLINK_LOG_DIR": str(log_dir),
            "FLINK_PID_DIR": str(tmp_dir),
            "JAVA_HOME": str(Path(java_bin()).resolve().parents[1]),
        })
        bin_dir = FLINK_HOME / "bin"
        self._procs = [
            ManagedProcess("flink-jobmanager",
                           ["bash", str(bin_dir / "jobmanager.sh"), "start-foreground",
                            "-D", f"metrics.internal.query-service.port={jm_metrics}"],
                           log_dir / "jobmanager.console.log", cwd=self.base_dir, env=env),
            ManagedProcess("flink-taskmanager",
                           ["bash", str(bin_dir / "taskmanager.sh"), "start-foreground",
                            "-D", f"metrics.internal.query-service.port={tm_metrics}"],
                           log_dir / "taskmanager.console.log", cwd=self.base_dir, env=env),
        ]
        try:
            for p in self._procs:
                p.start()
            wait_until(self._ready, timeout=self.start_timeout,
                       what=f"Flink REST {self.rest_url} with {self.slots} free slots",
                       procs=self._procs)
        except BaseException:
            self.stop()
            raise
        return self.info

    @property
    def info(self) -> FlinkInfo:
        return FlinkInfo(
            rest_url=self.rest_url,
            flink_master=self.flink_master,
            job_server_jar=job_server_jar(),
            flink_version=versions().get("FLINK_VERSION", "1.19"),
            log_dir=self.base_dir / "log",
            beam_options=self.beam_options,
        )

    def stop(self) -> None:
        for p in reversed(self._procs):
            p.stop(timeout=30)
        self._procs = []

    # ---------------------------------------------------------------- internals
    def _check_installed(self) -> None:
        if not (FLINK_HOME / "bin" / "jobmanager.sh").exists() or not list(
                (FLINK_HOME / "lib").glob("flink-dist-*.jar")):
            raise ServerUnavailable(
                f"Flink distribution missing in {FLINK_HOME}: run `make setup` "
                "(installs the apache-flink wheels --no-deps into .cache/servers/flink-py)")
        jar = job_server_jar()
        if not jar.exists():
            raise ServerUnavailable(
                f"Beam Flink job-server jar missing ({jar}): run `make setup`")

    def _ready(self) -> bool:
        status, body = http_get(f"{self.rest_url}/overview", timeout=5)
        if status != 200:
            return False
        overview = json.loads(body)
        return int(overview.get("taskmanagers", 0)) >= 1 and int(
            overview.get("slots-available", 0)) >= self.slots
