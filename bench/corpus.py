"""Benchmark corpus: N mixed key-management events in native delivery layouts (not a test).

CloudTrail S3 objects ({"Records":[...]}, gzip), Key Vault storage-account NDJSON,
Vault file-audit NDJSON (request + response lines), CloudHSM classic text blocks.
Deterministic for a seed; written fast with orjson templates.
"""

from __future__ import annotations

import gzip
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

MIX = (("cloudtrail", 0.5), ("azure", 0.2), ("vault", 0.25), ("cloudhsm", 0.05))
PER_FILE = {"cloudtrail": 1000, "azure": 5000, "vault": 20000, "cloudhsm": 5000}
KMS_OPS = ("Decrypt", "Encrypt", "GenerateDataKey", "Decrypt", "Decrypt", "DescribeKey")
AZ_OPS = ("KeyDecrypt", "KeyEncrypt", "KeyWrap", "KeyUnwrap", "SecretGet", "KeyGet")
VAULT_OPS = ("encrypt", "decrypt", "decrypt", "datakey/plaintext", "sign")


def _ts(base: datetime, i: int, n: int, days: int) -> datetime:
    return base + timedelta(seconds=(i * days * 86400) // max(n, 1))


def cloudtrail_record(rng: random.Random, t: datetime, i: int) -> dict[str, object]:
    acct = "111122223333"
    r = rng.randrange(25)
    role = f"app-role-{r}"
    # Each application uses its own two keys (plus a shared one): realistic graph fan-out.
    k = (r * 2 + rng.randrange(2)) % 40 if rng.random() < 0.9 else 40
    key = f"{k:08x}-1234-5678-9abc-def012345678"
    op = KMS_OPS[rng.randrange(len(KMS_OPS))]
    failed = rng.random() < 0.01
    rec: dict[str, object] = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole", "principalId": f"AROAEXAMPLE{role}:s{i % 7}",
            "arn": f"arn:aws:sts::{acct}:assumed-role/{role}/s{i % 7}", "accountId": acct,
            "sessionContext": {"sessionIssuer": {"type": "Role",
                                                 "arn": f"arn:aws:iam::{acct}:role/{role}",
                                                 "accountId": acct, "userName": role}}},
        "eventTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "kms.amazonaws.com", "eventName": op, "awsRegion": "us-east-1",
        "sourceIPAddress": f"198.51.100.{rng.randrange(1, 250)}",
        "userAgent": "aws-sdk-go/1.44.0",
        "requestParameters": {
            "keyId": f"arn:aws:kms:us-east-1:{acct}:key/{key}",
            "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "encryptionContext": {"aws:s3:arn": f"arn:aws:s3:::bucket-{i % 9}/o"}},
        "responseElements": None,
        "requestID": f"req-{i:012d}", "eventID": f"evt-{i:012d}-0000-0000-000000000000",
        "readOnly": True,
        "resources": [{"accountId": acct, "type": "AWS::KMS::Key",
                       "ARN": f"arn:aws:kms:us-east-1:{acct}:key/{key}"}],
        "eventType": "AwsApiCall", "managementEvent": True, "recipientAccountId": acct,
        "eventCategory": "Management",
    }
    if failed:
        rec["errorCode"] = "AccessDenied"
        rec["errorMessage"] = "User is not authorized to perform kms:Decrypt"
    return rec


def azure_record(rng: random.Random, t: datetime, i: int) -> dict[str, object]:
    app = rng.randrange(30)
    vault = f"contoso-kv-{app % 5}"
    op = AZ_OPS[rng.randrange(len(AZ_OPS))]
    kind = "secrets" if op == "SecretGet" else "keys"
    oid = f"00000000-0000-0000-0000-{app:012d}"
    return {
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        "category": "AuditEvent", "operationName": op, "operationVersion": "7.4",
        "resourceId": f"/SUBSCRIPTIONS/A1B2C3D4-0000-0000-0000-000000000001/RESOURCEGROUPS/RG/"
                      f"PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{vault.upper()}",
        "resultType": "Success", "resultSignature": "OK", "durationMs": "12",
        "callerIpAddress": f"203.0.113.{rng.randrange(1, 250)}",
        "correlationId": f"c0rr-{i:012d}",
        "identity": {"claim": {"oid": oid, "appid": f"app-{oid[-4:]}",
                               "http://schemas.microsoft.com/identity/claims/tenantid":
                               "72f988bf-0000-0000-0000-000000000000"}},
        "properties": {"id": f"https://{vault}.vault.azure.net/{kind}/k{app + rng.randrange(2)}/"
                             f"0123456789abcdef0123456789abcdef",
                       "clientInfo": "azsdk-python-keyvault-keys/4.8.0", "httpStatusCode": 200,
                       "requestUri": f"https://{vault}.vault.azure.net/{kind}/x?api-version=7.4",
                       "isAccessPolicyAuthorized": None, "tlsVersion": "TLS1_2"},
    }


Record = dict[str, object]


def vault_pair(rng: random.Random, t: datetime, i: int) -> tuple[Record, Record]:
    op = VAULT_OPS[rng.randrange(len(VAULT_OPS))]
    e = rng.randrange(40)
    key = f"app-key-{e // 2}"
    ent = f"ent-{e:04d}"
    auth = {"client_token": "hmac-sha256:aa", "accessor": f"hmac-sha256:{ent}",
            "display_name": f"approle-{ent}", "policies": ["default", "transit-user"],
            "token_policies": ["default", "transit-user"], "entity_id": ent,
            "token_type": "service"}
    req = {"id": f"{i:08d}-aaaa-bbbb-cccc-dddddddddddd", "operation": "update",
           "mount_type": "transit", "client_token": "hmac-sha256:aa",
           "client_token_accessor": f"hmac-sha256:{ent}", "namespace": {"id": "root"},
           "path": f"transit/{op}/{key}", "data": {"plaintext": "hmac-sha256:bb"},
           "remote_address": f"192.0.2.{rng.randrange(1, 250)}"}
    ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"
    request = {"time": ts, "type": "request", "auth": auth, "request": req}
    response = {"time": ts, "type": "response", "auth": auth, "request": req,
                "response": {"mount_type": "transit", "data": {"ciphertext": "hmac-sha256:cc"}}}
    return request, response


def cloudhsm_block(rng: random.Random, t: datetime, i: int) -> str:
    usecs = int(t.timestamp() * 1_000_000)
    return (f"Time: {t.strftime('%m/%d/%y %H:%M:%S')}.{t.microsecond:06d}, usecs:{usecs}\n"
            f"Sequence No : 0x{i:x}\nReboot counter : 0x2\n"
            "Command Type(hex) : CN_MGMT_CMD (0x0)\nOpcode : CN_GENERATE_KEY (0x20)\n"
            f"Session Handle : 0x{0x7014000 + (i % 8):x}\nResponse : 0:HSM Return: SUCCESS\n"
            "Log type : MGMT_KEY_DETAILS_LOG (1)\n"
            f"Priv/Secret Key Handle : {100 + rng.randrange(50)}\nPublic Key Handle : 0\n\n")


def write_corpus(out: Path, n: int, seed: int = 7, days: int = 30) -> dict[str, int]:
    rng = random.Random(seed)
    base = datetime(2026, 10, 1, tzinfo=UTC)
    counts: dict[str, int] = {}
    out.mkdir(parents=True, exist_ok=True)
    for family, share in MIX:
        total = int(n * share)
        counts[family] = total
        per = PER_FILE[family]
        for f0 in range(0, total, per):
            m = min(per, total - f0)
            times = [_ts(base, f0 + j, total, days) for j in range(m)]
            if family == "cloudtrail":
                recs = [cloudtrail_record(rng, t, f0 + j) for j, t in enumerate(times)]
                data = gzip.compress(orjson.dumps({"Records": recs}), compresslevel=1, mtime=0)
                (out / f"ct_{f0:09d}.json.gz").write_bytes(data)
            elif family == "azure":
                body = b"".join(orjson.dumps(azure_record(rng, t, f0 + j)) + b"\n"
                                for j, t in enumerate(times))
                (out / f"kv_{f0:09d}.json").write_bytes(body)
            elif family == "vault":
                lines = []
                for j, t in enumerate(times):
                    a, b = vault_pair(rng, t, f0 + j)
                    lines += [orjson.dumps(a), orjson.dumps(b)]
                (out / f"vault_{f0:09d}.log").write_bytes(b"\n".join(lines) + b"\n")
            else:
                text = "".join(cloudhsm_block(rng, t, f0 + j) for j, t in enumerate(times))
                (out / f"hsm_{f0:09d}.log").write_text(text)
    return counts


if __name__ == "__main__":
    target = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(write_corpus(target, n))
