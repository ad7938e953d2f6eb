"""Live-mode latency: object lands in S3 -> its alert is searchable in OpenSearch.

Starts SeaweedFS and OpenSearch on 127.0.0.1 (the test launchers), runs `keytrail watch`
at its default interval, uploads one CloudTrail object every PERIOD seconds (each with a
ScheduleKeyDeletion on a fresh key plus background Decrypts), and polls OpenSearch for the
alert on that key. Prints median and p95 latency. Not a test; never fails a build.

Usage: python bench/watch_latency.py [N_OBJECTS] [PERIOD_S] [INTERVAL_S]
"""

from __future__ import annotations

import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.corpus import cloudtrail_record  # noqa: E402
from tests.servers.opensearch import OpenSearchServer  # noqa: E402
from tests.servers.seaweedfs import SeaweedFSServer  # noqa: E402

BUCKET = "latency"


def object_with_alert(i: int, key_id: str) -> bytes:
    import random

    rng = random.Random(i)
    now = datetime.now(UTC)
    recs = [cloudtrail_record(rng, now, i * 1000 + j) for j in range(200)]
    trigger = dict(recs[0])
    trigger.update({
        "eventName": "ScheduleKeyDeletion", "readOnly": False, "eventID": str(uuid.uuid4()),
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "requestParameters": {"keyId": f"arn:aws:kms:us-east-1:111122223333:key/{key_id}",
                              "pendingWindowInDays": 7},
        "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key",
                       "ARN": f"arn:aws:kms:us-east-1:111122223333:key/{key_id}"}],
    })
    trigger.pop("errorCode", None)
    recs.append(trigger)
    return gzip.compress(orjson.dumps({"Records": recs}), mtime=0)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    period = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    from opensearchpy import OpenSearch

    with tempfile.TemporaryDirectory() as tmp:
        os_srv, s3_srv = OpenSearchServer(Path(tmp) / "os"), SeaweedFSServer(Path(tmp) / "s3")
        os_srv.start()
        s3_srv.start()
        try:
            info = s3_srv.info
            env = {**os.environ, **info.env(), "KEYTRAIL_S3_ENDPOINT_URL": info.endpoint_url}
            url = os_srv.url
            base = [sys.executable, "-m", "pipelines.cli"]
            subprocess.run([*base, "setup", "--sink", "opensearch", "--sink-url", url,
                            "--roles-out", str(Path(tmp) / "roles")], cwd=REPO, env=env,
                           check=True, capture_output=True)
            s3 = s3_srv.client()
            s3.create_bucket(Bucket=BUCKET)
            watch = subprocess.Popen(
                [*base, "watch", f"s3://{BUCKET}/AWSLogs/", "--sink", "opensearch",
                 "--sink-url", url, "--out", str(Path(tmp) / "out"), "--state",
                 str(Path(tmp) / "state"), "--interval", str(interval), "-q"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = OpenSearch(url, timeout=30)
            pending: dict[str, float] = {}
            latencies: list[float] = []
            next_upload = time.monotonic()
            i = 0
            deadline = time.monotonic() + n * period + 120
            while (i < n or pending) and time.monotonic() < deadline:
                now = time.monotonic()
                if i < n and now >= next_upload:
                    key_id = str(uuid.UUID(int=i + 1))
                    s3.put_object(Bucket=BUCKET, Key=f"AWSLogs/obj-{i:05d}.json.gz",
                                  Body=object_with_alert(i, key_id))
                    pending[key_id] = time.monotonic()
                    i += 1
                    next_upload += period
                for key_id, t0 in list(pending.items()):
                    uid = f"arn:aws:kms:us-east-1:111122223333:key/{key_id}"
                    r = client.count(index="keytrail-alerts", body={"query": {"term": {
                        "keytrail.key.uid": uid}}}, ignore_unavailable=True)
                    if r.get("count", 0) > 0:
                        latencies.append(time.monotonic() - t0)
                        del pending[key_id]
                time.sleep(0.2)
            watch.terminate()
            watch.wait(timeout=60)
            client.close()
        finally:
            s3_srv.stop()
            os_srv.stop()
    latencies.sort()
    if not latencies:
        print("no alert became searchable")
        return
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    print(f"{'objects':>8} {'period s':>9} {'interval s':>10} {'median s':>9} {'p95 s':>7} "
          f"{'max s':>7} {'missed':>7}")
    print(f"{len(latencies):>8} {period:>9.1f} {interval:>10.1f} "
          f"{statistics.median(latencies):>9.2f} {p95:>7.2f} {latencies[-1]:>7.2f} "
          f"{n - len(latencies):>7}")


if __name__ == "__main__":
    main()
