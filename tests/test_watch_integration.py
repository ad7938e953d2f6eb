"""Live mode end to end: S3 (SeaweedFS) -> keytrail watch -> OpenSearch, with kill -9.

Objects are uploaded while `keytrail watch` runs; the watcher is killed with SIGKILL at
random points and restarted. At the end OpenSearch must hold exactly the events,
inventory and alerts of a batch run over the same objects: same ids, same counts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.store import read_events
from tests.golden_util import REPO, SAMPLES

pytestmark = pytest.mark.integration
BUCKET = "keytrail-live"


def _ids(url: str, index: str, field: str) -> set[str]:
    from opensearchpy import OpenSearch
    from opensearchpy.helpers import scan

    client = OpenSearch(url, timeout=30)
    try:
        client.indices.refresh(index=index, ignore_unavailable=True)
        return {h["_id"] for h in scan(client, index=index, query={"query": {"match_all": {}}},
                                       _source=False, ignore_unavailable=True)}
    finally:
        client.close()


def _spawn(env: dict[str, str], url: str, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "watch", f"s3://{BUCKET}/logs/", "--sink",
         "opensearch", "--sink-url", url, "--out", str(tmp / "out"), "--state",
         str(tmp / "state"), "--interval", "0.3", "-q"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_watch_s3_to_opensearch_survives_sigkill(seaweedfs: Any, opensearch: Any,
                                                 tmp_path: Path) -> None:
    import boto3

    url = opensearch.url
    env = {**os.environ, **seaweedfs.info.env(),
           "KEYTRAIL_S3_ENDPOINT_URL": seaweedfs.info.endpoint_url}
    setup = subprocess.run([sys.executable, "-m", "pipelines.cli", "setup", "--sink",
                            "opensearch", "--sink-url", url, "--index-prefix", "keytrail",
                            "--roles-out", str(tmp_path / "roles")],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                           check=False)
    assert setup.returncode == 0, setup.stderr[-2000:]
    s3 = boto3.client("s3", **seaweedfs.info.boto3_kwargs())
    s3.create_bucket(Bucket=BUCKET)
    files = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "README.md")
    rng = random.Random(5)
    rng.shuffle(files)
    proc = _spawn(env, url, tmp_path)
    kills = 0
    try:
        for i, p in enumerate(files):
            s3.upload_file(str(p), BUCKET, "logs/" + p.relative_to(SAMPLES).as_posix())
            time.sleep(rng.uniform(0.0, 0.4))
            if i % 7 == 6:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = _spawn(env, url, tmp_path)
        # Reference: a batch run over exactly the uploaded objects.
        ref = tmp_path / "batch"
        batch = subprocess.run([sys.executable, "-m", "pipelines.cli", "run",
                                f"s3://{BUCKET}/logs/", "--out", str(ref), "-q"], cwd=REPO,
                               env=env, capture_output=True, text=True, timeout=600, check=False)
        assert batch.returncode == 0, batch.stderr[-2000:]
        want_events = {r["event.id"] for r in read_events(ref)}
        want_inv = {r["inventory_id"] for r in json.loads((ref / "inventory.json").read_text())}
        want_alerts = {json.loads(x)["keytrail.alert.id"]
                       for x in (ref / "alerts.ndjson").read_text().splitlines() if x}
        deadline = time.time() + 240
        got: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        while time.time() < deadline:
            got = (_ids(url, "keytrail-events-*", "event.id"),
                   _ids(url, "keytrail-inventory", "keytrail.key.uid"),
                   _ids(url, "keytrail-alerts", "keytrail.alert.id"))
            if got == (want_events, want_inv, want_alerts):
                break
            time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert kills >= 3
    assert got[0] == want_events, (len(got[0]), len(want_events))
    assert got[1] == want_inv
    assert got[2] == want_alerts, (sorted(got[2] - want_alerts), sorted(want_alerts - got[2]))
    metrics = (tmp_path / "out" / "metrics.ndjson").read_text().splitlines()
    last = json.loads(metrics[-1])
    assert {"latency_p50_seconds", "latency_p95_seconds", "event_freshness_seconds"} <= set(last)
