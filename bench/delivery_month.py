"""Events parsed against events written for a generated month in realistic delivery sizes.

Not a test: prints a table. Writes (deterministically, once per --data directory):
- Azure Key Vault hourly blobs, each ONE line `{"records":[...]}` of several MB (a busy
  vault's PT1H.json as Azure Monitor writes it);
- AWS CloudTrail 5-minute S3 objects `{"Records":[...]}` (.json.gz), organization-trail
  style: other services' events first, then the KMS events;
- one Event Hub capture per day: `{"records":[...]}` batches, one per line.
Then parses every file with the code found on PYTHONPATH (so the same script measures
main's code and this branch's) and counts key events, skips, quarantines and the records
lost (written but neither an event, a skip nor a quarantine).

Usage:
  python bench/delivery_month.py [--days 30] [--data DIR] [--before /work/main]
(runs the parse step once per code root in a subprocess: before = --before, after = this
checkout; omit --before to measure only this checkout).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve()
KV_PER_HOUR = 4000  # ~2.7 MB per hourly blob, one line
CT_PER_OBJECT = 240  # per 5-minute object, 30% other services first
HUB_PER_LINE = 50


def _kv(i: int, t: int) -> dict[str, object]:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{i % 10_000_000:07d}Z"
    key = f"https://contoso-kv.vault.azure.net/keys/k{i % 40}/{i % 977:032x}"
    return {"time": ts, "category": "AuditEvent", "operationName": ("KeyDecrypt", "KeyWrap",
                                                                    "KeyUnwrap", "KeyGet")[i % 4],
            "resultType": "Success", "correlationId": f"{i:08x}-0000-4000-8000-000000000000",
            "callerIpAddress": f"10.1.{i % 200}.{i % 250}",
            "identity": {"claim": {"oid": f"oid-{i % 50}", "appid": f"app-{i % 50}",
                                   "upn": f"svc{i % 50}@contoso.example.com"}},
            "properties": {"id": key, "clientInfo": "azsdk-net-Security.KeyVault.Keys/4.6.0",
                           "httpStatusCode": 200, "requestUri": key + "/decrypt?api-version=7.4",
                           "isAccessPolicyMatch": True, "tlsVersion": "TLS1_2"},
            "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/PROD/PROVIDERS/MICROSOFT.KEYVAULT/"
                          "VAULTS/CONTOSO-KV",
            "operationVersion": "7.4", "resultSignature": "OK", "durationMs": "11"}


def _ct(i: int, t: int, kms: bool) -> dict[str, object]:
    acct = "111122223333"
    rec: dict[str, object] = {
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "principalId": f"AROA:s{i % 7}",
                         "arn": f"arn:aws:sts::{acct}:assumed-role/app-{i % 25}/s",
                         "accountId": acct,
                         "sessionContext": {"sessionIssuer": {
                             "type": "Role", "arn": f"arn:aws:iam::{acct}:role/app-{i % 25}",
                             "accountId": acct, "userName": f"app-{i % 25}"}}},
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
        "eventSource": "kms.amazonaws.com" if kms else "s3.amazonaws.com",
        "eventName": ("Decrypt", "GenerateDataKey", "Encrypt")[i % 3] if kms else "GetObject",
        "awsRegion": "us-east-1", "sourceIPAddress": "10.0.1.20",
        "userAgent": "aws-sdk-java/2.25.11", "requestID": f"r{i}", "eventID": f"e{i:012d}",
        "readOnly": True, "eventType": "AwsApiCall", "managementEvent": kms,
        "recipientAccountId": acct, "eventCategory": "Management" if kms else "Data"}
    if kms:
        key = f"arn:aws:kms:us-east-1:{acct}:key/{i % 40:08x}-1234-5678-9abc-def012345678"
        rec["requestParameters"] = {"keyId": key, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
        rec["resources"] = [{"accountId": acct, "type": "AWS::KMS::Key", "ARN": key}]
    else:
        rec["requestParameters"] = {"bucketName": "data", "key": f"o/{i}"}
    return rec


def write_month(out: Path, days: int) -> dict[str, int]:
    start = 1_740_960_000
    written = {"azure.keyvault": 0, "aws.cloudtrail": 0, "other_services": 0, "files": 0}
    n = 0
    for h in range(days * 24):
        t = start + h * 3600
        recs = [_kv(n + k, t + k * 3600 // KV_PER_HOUR) for k in range(KV_PER_HOUR)]
        n += KV_PER_HOUR
        p = out / f"kv/y=2025/d={h // 24:02d}/h={h % 24:02d}/PT1H.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(orjson.dumps({"records": recs}) + b"\n")
        written["azure.keyvault"] += len(recs)
        written["files"] += 1
        for m in range(12):
            t5 = t + m * 300
            other = [_ct(n + k, t5, False) for k in range(CT_PER_OBJECT * 3 // 10)]
            kms = [_ct(n + k, t5 + k, True) for k in range(len(other), CT_PER_OBJECT)]
            n += CT_PER_OBJECT
            q = out / f"ct/{h // 24:02d}/{h % 24:02d}{m * 5:02d}.json.gz"
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(gzip.compress(orjson.dumps({"Records": other + kms}), 1, mtime=0))
            written["aws.cloudtrail"] += len(kms)
            written["other_services"] += len(other)
            written["files"] += 1
        if h % 24 == 0:  # one Event Hub capture a day
            batch = [_kv(n + k, t + k) for k in range(KV_PER_HOUR)]
            n += KV_PER_HOUR
            lines = [orjson.dumps({"records": batch[k : k + HUB_PER_LINE]})
                     for k in range(0, len(batch), HUB_PER_LINE)]
            p = out / f"eventhub/{h // 24:02d}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"\n".join(lines) + b"\n")
            written["azure.keyvault"] += len(batch)
            written["files"] += 1
    (out / "written.json").write_bytes(orjson.dumps(written))
    return written


def parse_all(data: Path) -> dict[str, object]:
    """Parse every file with the code on sys.path (main's or this branch's)."""
    from collections import Counter

    from parsers.base import REGISTRY, ParseOptions, Quarantined, Skipped
    from parsers.detect import parse_stream
    from parsers.schema import KeyEvent
    from pipelines.sources import InputFile, open_input

    parsers = REGISTRY.create_all(ParseOptions())
    events: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    quarantined: Counter[str] = Counter()
    t0, c0 = time.perf_counter(), time.process_time()
    for p in sorted(x for x in data.rglob("*") if x.is_file() and x.name != "written.json"):
        with open_input(InputFile(str(p), p.stat().st_size)) as stream:
            _, outs = parse_stream(stream, str(p), parsers)
            for o in outs:
                if type(o) is KeyEvent:
                    events[o.dataset] += 1
                elif isinstance(o, Skipped):
                    skipped[o.reason] += 1
                elif isinstance(o, Quarantined):
                    quarantined[o.reason] += 1
    return {"events": dict(events), "skipped": dict(skipped), "quarantined": dict(quarantined),
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu": round(time.process_time() - c0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--data", default="/tmp/keytrail-bench-month")
    ap.add_argument("--before", help="code root of the code to compare with (e.g. /work/main)")
    ap.add_argument("--parse-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    data = Path(args.data)
    if args.parse_only:
        sys.stdout.write(orjson.dumps(parse_all(data)).decode() + "\n")
        return
    marker = data / "written.json"
    if not marker.exists() or orjson.loads(marker.read_bytes()).get("days") != args.days:
        t0 = time.perf_counter()
        written = write_month(data, args.days)
        written["days"] = args.days
        marker.write_bytes(orjson.dumps(written))
        print(f"generated {written['files']} files in {time.perf_counter() - t0:.0f}s")
    written = orjson.loads(marker.read_bytes())
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    print(f"{args.days} days, {written['files']} files, {size / 1e9:.2f} GB on disk; written: "
          f"{written['azure.keyvault']:,} Key Vault + {written['aws.cloudtrail']:,} KMS events, "
          f"{written['other_services']:,} other-service records")
    roots = ([("before", args.before)] if args.before else []) + [("after", str(HERE.parents[1]))]
    print(f"{'code':<7} {'kv events':>12} {'kms events':>12} {'lost kv':>10} {'lost kms':>10} "
          f"{'skipped':>10} {'quarantined':>12} {'wall s':>8} {'cpu s':>8}")
    for label, root in roots:
        env = dict(os.environ, PYTHONPATH=root)
        out = subprocess.run([sys.executable, str(HERE), "--data", str(data), "--parse-only"],
                             env=env, capture_output=True, text=True, check=True, cwd=root)
        r = orjson.loads(out.stdout.strip().splitlines()[-1])
        ev = r["events"]
        kv, kms = ev.get("azure.keyvault", 0), ev.get("aws.cloudtrail", 0)
        print(f"{label:<7} {kv:>12,} {kms:>12,} {written['azure.keyvault'] - kv:>10,} "
              f"{written['aws.cloudtrail'] - kms:>10,} {sum(r['skipped'].values()):>10,} "
              f"{sum(r['quarantined'].values()):>12,} {r['seconds']:>8} {r['cpu']:>8}")
        if r["quarantined"]:
            print(f"        quarantined by reason: {r['quarantined']}")


if __name__ == "__main__":
    main()
