"""The same pipeline on a real Flink cluster and from a real S3-compatible store.

Flink: FlinkRunner + Beam's Flink job server against a standalone cluster on 127.0.0.1
must give the same inventory, edges, alerts and accounting as the in-process runner.
S3: `keytrail run s3://bucket/prefix` against SeaweedFS must equal the local run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipelines.run import run_batch
from pipelines.store import read_events
from tests.golden_util import REPO, SAMPLES

pytestmark = pytest.mark.integration

COMPARED = ("inventory.json", "alerts.ndjson", "graph.json", "graph.graphml", "report.html",
            "quarantine.ndjson")


def _copy_samples(dst: Path) -> Path:
    shutil.copytree(SAMPLES, dst / "sample_logs")
    return dst / "sample_logs"


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_flink_run_equals_in_process_run(flink_cluster: Any, tmp_path: Path) -> None:
    src = _copy_samples(tmp_path)
    local = tmp_path / "local"
    flink = tmp_path / "flink"
    s_local = run_batch([str(src)], str(local))
    s_flink = run_batch([str(src)], str(flink), beam_args=list(flink_cluster.beam_options))
    assert s_flink == s_local
    for name in COMPARED:
        assert _digest(flink / name) == _digest(local / name), f"{name} differs on Flink"
    assert read_events(flink) == read_events(local)
    for name in ("edges.parquet", "resource_edges.parquet", "inventory.parquet",
                 "alerts.parquet"):
        assert _digest(flink / name) == _digest(local / name), f"{name} differs on Flink"


def test_s3_input_equals_local_input(seaweedfs: Any, tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", **seaweedfs.info.boto3_kwargs())
    bucket = "keytrail-it"
    s3.create_bucket(Bucket=bucket)
    files = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "README.md")
    for p in files:
        s3.upload_file(str(p), bucket, "logs/" + p.relative_to(SAMPLES).as_posix())
    env = {**os.environ, **seaweedfs.info.env(),
           "KEYTRAIL_S3_ENDPOINT_URL": seaweedfs.info.endpoint_url}
    out_s3 = tmp_path / "s3"
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", f"s3://{bucket}/logs/",
                        "--out", str(out_s3), "-q"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    out_local = tmp_path / "local"
    run_batch([str(SAMPLES)], str(out_local))

    def normalized(out: Path, prefix: str) -> list[dict[str, Any]]:
        rows = read_events(out)
        for row in rows:
            row["log.file.path"] = row["log.file.path"].replace(prefix, "")
        return rows

    assert normalized(out_s3, f"s3://{bucket}/logs/") == normalized(out_local, f"{SAMPLES}/")
    inv_s3 = (out_s3 / "inventory.json").read_text().replace(f"s3://{bucket}/logs/", "")
    inv_local = (out_local / "inventory.json").read_text().replace(f"{SAMPLES}/", "")
    assert inv_s3 == inv_local


def test_s3_unreachable_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "KEYTRAIL_S3_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_MAX_ATTEMPTS": "1"}
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "s3://nope/x/", "--out",
                        str(tmp_path / "o")], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip() and "crcmod" not in x]
    assert len(lines) == 1 and "cannot list S3 objects" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
