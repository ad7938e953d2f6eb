"""`keytrail generate`: realistic multi-provider key-management logs with labelled attacks.

Writes, under OUT, the native delivery layouts:
- AWS CloudTrail S3 objects `AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD/
  <acct>_CloudTrail_<region>_<YYYYMMDDTHHMMZ>_<rand>.json.gz` holding `{"Records":[...]}`;
- Azure Key Vault storage-account blobs `insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/
  .../VAULTS/<VAULT>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`, one AuditEvent per line;
- HashiCorp Vault file-audit NDJSON (request + response records), one file per day;
- AWS CloudHSM classic audit text, one file per HSM;
plus `labels.json` (scenarios with expected detectors, matching tokens and time ranges, and
the benign/attack event counts). Benign background has diurnal and weekday patterns,
routine rotations, benign denials and benign lookalikes. Everything is a pure function of
(seed, days, scale): the same arguments give byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from pipelines.outdir import atomic_write

ACCT: Final[str] = "111122223333"
OTHER: Final[str] = "444455556666"
REGION: Final[str] = "us-east-1"
SUB: Final[str] = "8F2C1D3E-0000-4C5B-9A8B-112233445566"
TENANT: Final[str] = "72f988bf-0000-41af-91ab-2d7cd011db47"
START: Final[int] = 1_740_960_000  # 2025-03-03T00:00:00Z, a Monday
DAY: Final[int] = 86_400
HOUR: Final[int] = 3_600
RATE: Final[float] = 1.75  # background multiplier: scale 1.0 over 30 days ~ 100k events


def _uuid(*parts: object) -> str:
    return str(uuid.UUID(bytes=hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()))


def _hex(*parts: object, n: int = 64) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=n // 2).hexdigest()


def ct_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def az_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e7):07d}Z"


def vault_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def karn(key_id: str, acct: str = ACCT) -> str:
    return f"arn:aws:kms:{REGION}:{acct}:key/{key_id}"


def role_arn(name: str, acct: str = ACCT) -> str:
    return f"arn:aws:iam::{acct}:role/{name}"


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCT}:user/{name}"


# --- identities --------------------------------------------------------------------------

def role_identity(name: str, acct: str = ACCT) -> dict[str, Any]:
    return {"type": "AssumedRole", "principalId": f"AROA{_hex(name, n=16).upper()}:{name}-session",
            "arn": f"arn:aws:sts::{acct}:assumed-role/{name}/{name}-session", "accountId": acct,
            "accessKeyId": "ASIA" + _hex(name, "ak", n=16).upper(),
            "sessionContext": {"sessionIssuer": {"type": "Role",
                                                 "principalId": f"AROA{_hex(name, n=16).upper()}",
                                                 "arn": role_arn(name, acct), "accountId": acct,
                                                 "userName": name},
                               "attributes": {"creationDate": "2025-03-01T00:00:00Z",
                                              "mfaAuthenticated": "false"}}}


def user_identity(name: str) -> dict[str, Any]:
    return {"type": "IAMUser", "principalId": "AIDA" + _hex(name, n=16).upper(),
            "arn": user_arn(name), "accountId": ACCT,
            "accessKeyId": "AKIA" + _hex(name, "ak", n=16).upper(), "userName": name}


SERVICE: Final[dict[str, Any]] = {"accountId": ACCT, "invokedBy": "AWS Internal"}


@dataclass
class Writer:
    """Collects records per output file; writes them sorted by time at the end."""

    out: Path
    ct: dict[str, list[tuple[float, int, dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list))
    lines: dict[str, list[tuple[float, int, bytes]]] = field(
        default_factory=lambda: defaultdict(list))
    seq: int = 0
    benign: int = 0
    attack: int = 0
    per_source: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def _count(self, source: str, attack: bool) -> None:
        self.seq += 1
        self.per_source[source] += 1
        if attack:
            self.attack += 1
        else:
            self.benign += 1

    def cloudtrail(self, t: float, rec: dict[str, Any], attack: bool = False) -> None:
        hour = time.strftime("%Y/%m/%d/%H", time.gmtime(t))
        self.ct[hour].append((t, self.seq, rec))
        self._count("aws.cloudtrail", attack)

    def keyvault(self, t: float, vault: str, rec: dict[str, Any], attack: bool = False) -> None:
        g = time.gmtime(t)
        path = (f"insights-logs-auditevent/resourceId=/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/PROD/"
                f"PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/{vault.upper()}/y={g.tm_year}/"
                f"m={g.tm_mon:02d}/d={g.tm_mday:02d}/h={g.tm_hour:02d}/m=00/PT1H.json")
        self.lines[path].append((t, self.seq, orjson.dumps(rec)))
        self._count("azure.keyvault", attack)

    def activity(self, t: float, rec: dict[str, Any], attack: bool = False) -> None:
        g = time.gmtime(t)
        path = (f"insights-activity-logs/resourceId=/SUBSCRIPTIONS/{SUB}/y={g.tm_year}/"
                f"m={g.tm_mon:02d}/d={g.tm_mday:02d}/h={g.tm_hour:02d}/m=00/PT1H.json")
        self.lines[path].append((t, self.seq, orjson.dumps(rec)))
        self._count("azure.keyvault", attack)

    def vault(self, t: float, request: dict[str, Any], response: dict[str, Any],
              attack: bool = False) -> None:
        path = "vault-audit/" + time.strftime("vault_audit-%Y-%m-%d.log", time.gmtime(t))
        self.lines[path].append((t, self.seq, orjson.dumps(request)))
        self.seq += 1
        self.lines[path].append((t + 0.002, self.seq, orjson.dumps(response)))
        self._count("hashicorp_vault.audit", attack)

    def hsm(self, t: float, hsm_id: str, block: str, attack: bool = False,
            stream: str | None = None) -> None:
        path = f"cloudhsm/{stream or hsm_id}/cloudhsm_audit.log"
        self.lines[path].append((t, self.seq, block.encode()))
        self._count("hsm.cloudhsm", attack)

    def flush(self) -> list[str]:
        written = []
        for hour, recs in sorted(self.ct.items()):
            recs.sort(key=lambda r: (r[0], r[1]))
            stamp = hour.replace("/", "")[:8] + "T" + hour[-2:] + "00Z"
            name = (f"AWSLogs/{ACCT}/CloudTrail/{REGION}/{hour[:10]}/{ACCT}_CloudTrail_{REGION}_"
                    f"{stamp}_{_hex(hour, n=16)}.json.gz")
            body = orjson.dumps({"Records": [r[2] for r in recs]})
            atomic_write(self.out / name, gzip.compress(body, compresslevel=5, mtime=0))
            written.append(name)
        for name, items in sorted(self.lines.items()):
            items.sort(key=lambda r: (r[0], r[1]))
            sep = b"\n\n" if name.startswith("cloudhsm/") else b"\n"
            atomic_write(self.out / name, sep.join(r[2] for r in items) + b"\n")
            written.append(name)
        return written


# --- record builders -----------------------------------------------------------------------

def ct_record(t: float, name: str, ident: dict[str, Any], key: str | None,
              params: dict[str, Any] | None = None, resp: dict[str, Any] | None = None,
              error: tuple[str, str] | None = None, ip: str = "10.0.1.20",
              service_event: bool = False, read_only: bool = False) -> dict[str, Any]:
    eid = _uuid("ct", t, name, key, ident.get("arn"), params and str(params))
    rec: dict[str, Any] = {
        "eventVersion": "1.09" if not service_event else "1.08", "userIdentity": ident,
        "eventTime": ct_time(t), "eventSource": "kms.amazonaws.com", "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "AWS Internal" if service_event else ip,
        "userAgent": "AWS Internal" if service_event else "aws-sdk-java/2.25.11 Linux/5.10",
        "requestParameters": params, "responseElements": resp,
    }
    if error:
        rec["errorCode"], rec["errorMessage"] = error
    rec.update({"requestID": eid, "eventID": eid, "readOnly": read_only})
    if key:
        rec["resources"] = [{"accountId": key.split(":")[4], "type": "AWS::KMS::Key", "ARN": key}]
    rec.update({"eventType": "AwsServiceEvent" if service_event else "AwsApiCall",
                "managementEvent": True, "recipientAccountId": ACCT,
                "eventCategory": "Management"})
    if not service_event:
        rec["tlsDetails"] = {"tlsVersion": "TLSv1.3",
                             "cipherSuite": "TLS_AES_128_GCM_SHA256",
                             "clientProvidedHostHeader": f"kms.{REGION}.amazonaws.com"}
    return rec


CRYPTO_PARAMS: Final[dict[str, Callable[[str], dict[str, Any]]]] = {
    "Decrypt": lambda k: {"encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                          "encryptionContext": {"aws:s3:arn": "arn:aws:s3:::payments-data"}},
    "Encrypt": lambda k: {"keyId": k, "encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
    "GenerateDataKey": lambda k: {"keyId": k, "keySpec": "AES_256",
                                  "encryptionContext": {"aws:s3:arn":
                                                        "arn:aws:s3:::payments-data"}},
}


def az_record(t: float, op: str, obj: str, oid: str, upn: str, ip: str, status: int = 200,
              vault: str = "contoso-kv") -> dict[str, Any]:
    sig = {200: "OK", 204: "No Content", 403: "Forbidden", 404: "Not Found"}.get(status, "OK")
    return {
        "time": az_time(t), "category": "AuditEvent", "operationName": op,
        "resultType": "Success", "correlationId": _uuid("az", t, op, obj, oid),
        "callerIpAddress": ip,
        "identity": {"claim": {"oid": oid, "appid": _uuid("app", oid), "upn": upn,
                               "http://schemas.microsoft.com/identity/claims/tenantid": TENANT}},
        "properties": {"id": obj, "clientInfo": "azsdk-net-Security.KeyVault.Secrets/4.6.0",
                       "httpStatusCode": status, "requestUri": obj + "?api-version=7.4",
                       "isAccessPolicyMatch": True, "tlsVersion": "TLS1_2"},
        "resourceId": (f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/PROD/PROVIDERS/MICROSOFT.KEYVAULT/"
                       f"VAULTS/{vault.upper()}"),
        "operationVersion": "7.4", "resultSignature": sig, "durationMs": "11",
    }


def activity_record(t: float, op: str, resource_id: str, oid: str, upn: str, ip: str,
                    body: dict[str, Any] | None = None) -> dict[str, Any]:
    """An Azure Activity Log record (diagnostic-settings export shape)."""
    props: dict[str, Any] = {"statusCode": "OK", "eventCategory": "Administrative",
                             "entity": resource_id, "message": op}
    if body is not None:
        props["requestbody"] = json.dumps(body)
    claims = {"http://schemas.microsoft.com/identity/claims/objectidentifier": oid,
              "appid": _uuid("app", oid), "ipaddr": ip,
              "http://schemas.microsoft.com/identity/claims/tenantid": TENANT}
    if upn:
        claims["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"] = upn
    return {"time": az_time(t), "resourceId": resource_id, "operationName": op,
            "category": "Administrative", "resultType": "Success",
            "resultSignature": "Succeeded.OK", "durationMs": 380, "callerIpAddress": ip,
            "correlationId": _uuid("act", t, op), "identity": {"claims": claims},
            "level": "Information", "location": "westeurope", "properties": props}


VAULT_RID: Final[str] = (f"/subscriptions/{SUB.lower()}/resourceGroups/prod/providers/"
                         "Microsoft.KeyVault/vaults/contoso-kv")
DIAG_RID: Final[str] = VAULT_RID + "/providers/microsoft.insights/diagnosticSettings/kv-audit"
TRAIL: Final[str] = f"arn:aws:cloudtrail:{REGION}:{ACCT}:trail/org-audit"


def trail_record(t: float, name: str, ident: dict[str, Any], params: dict[str, Any],
                 ip: str) -> dict[str, Any]:
    rec = ct_record(t, name, ident, None, params, ip=ip)
    rec["eventSource"] = "cloudtrail.amazonaws.com"
    rec["tlsDetails"]["clientProvidedHostHeader"] = f"cloudtrail.{REGION}.amazonaws.com"
    return rec


def eve(name: str) -> tuple[str, str, str]:
    """An attacker-controlled Entra identity, one per scenario instance ('eve0', 'eve1')."""
    return _uuid("entra", name), f"{name}@contoso.example.com", "203.0.113.99"


def kv_uri(kind: str, name: str, vault: str = "contoso-kv") -> str:
    return f"https://{vault}.vault.azure.net/{kind}/{name}"


MOUNT_TYPES: Final[dict[str, str]] = {"transit": "transit", "secret": "kv", "sys": "system"}


def vault_records(t: float, path: str, op: str, entity: str | None, display: str,
                  policies: list[str], ip: str, data: dict[str, Any] | None = None,
                  resp: dict[str, Any] | None = None, error: str | None = None,
                  mount_type: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    tok = "hmac-sha256:" + _hex("tok", display)
    acc = "hmac-sha256:" + _hex("acc", display)
    auth: dict[str, Any] = {"client_token": tok, "accessor": acc, "display_name": display,
                            "policies": policies, "token_policies": policies,
                            "token_type": "service"}
    if entity:
        auth["entity_id"] = entity
    req: dict[str, Any] = {"id": _uuid("v", t, path, op, display), "operation": op,
                           "mount_type": mount_type or MOUNT_TYPES.get(path.split("/", 1)[0],
                                                                       "kv"),
                           "client_token": tok, "client_token_accessor": acc,
                           "namespace": {"id": "root"}, "path": path, "remote_address": ip}
    if data:
        req["data"] = data
    r1: dict[str, Any] = {"time": vault_time(t), "type": "request", "auth": auth, "request": req}
    r2: dict[str, Any] = {"time": vault_time(t + 0.002), "type": "response", "auth": auth,
                          "request": req, "response": resp or {}}
    if error:
        r1["error"] = error
        r2["error"] = error
    return r1, r2


def hsm_block(t: float, seq: int, reboot: int, opcode: str, code: int, handle: int,
              ok: bool = True, user: tuple[str, str] | None = None, key: int | None = None,
              error: str = "157:HSM Error: RET_USER_LOGIN_FAILURE") -> str:
    g = time.gmtime(t)
    micros = int((t % 1) * 1e6)
    ltype = ("MGMT_USER_DETAILS_LOG (2)" if user else "MGMT_KEY_DETAILS_LOG (1)" if key is not None
             else "MINIMAL_LOG_ENTRY (0)")
    lines = [
        f"Time: {time.strftime('%m/%d/%y %H:%M:%S', g)}.{micros:06d}, "
        f"usecs:{int(t) * 1_000_000 + micros}",
        f"Sequence No : 0x{seq:x}", f"Reboot counter : 0x{reboot:x}",
        "Command Type(hex) : CN_MGMT_CMD (0x0)", f"Opcode : {opcode} (0x{code:x})",
        f"Session Handle : 0x{handle:x}",
        "Response : " + ("0:HSM Return: SUCCESS" if ok else error), f"Log type : {ltype}",
    ]
    if user:
        lines += [f"User Name : {user[0]}", f"User Type : {user[1]}"]
    if key is not None:
        lines += [f"Priv/Secret Key Handle : {key}", "Public Key Handle : 0"]
    return "\n".join(lines)


# --- the simulated estate -------------------------------------------------------------------

@dataclass
class Stream:
    """A benign usage stream: one principal, one key/object, one action, a base rate per hour."""

    kind: str  # aws | azure | vault
    principal: str
    target: str
    action: str
    rate: float
    business: bool = True  # weekday/diurnal pattern (services run flat-ish)
    ips: tuple[str, ...] = ("10.0.1.20",)


@dataclass
class Estate:
    aws_keys: dict[str, str] = field(default_factory=dict)  # name -> key id
    streams: list[Stream] = field(default_factory=list)
    unusable: dict[str, list[tuple[float, float, str]]] = field(
        default_factory=lambda: defaultdict(list))  # target -> (from, to, error code)


AWS_APPS: Final[list[tuple[str, list[str], float, bool]]] = [
    ("PaymentsApp", ["payments", "payments-archive"], 9.0, True),
    ("OrdersApp", ["orders"], 8.0, True),
    ("ReportingApp", ["reports", "legacy-reports"], 3.0, True),
    ("DataPipeline", ["datalake", "orders"], 6.0, False),
    ("WebFrontend", ["sessions"], 10.0, True),
    ("BackupSvc", ["backups", "datalake"], 2.5, False),
    ("BillingApp", ["billing", "partner-import", "partner-expiring"], 3.0, True),
    ("AnalyticsApp", ["analytics", "legacy-2022"], 2.0, True),
]
AWS_KEYS: Final[list[str]] = ["payments", "payments-archive", "orders", "reports",
                              "legacy-reports", "datalake", "sessions", "backups", "billing",
                              "analytics", "partner-import", "legacy-2022", "partner-expiring",
                              "dormant-2024"]
AZ_IDENT: Final[dict[str, tuple[str, str, str]]] = {
    "app-payments": ("7c2e1a40-1111-4a2b-9c3d-0123456789ab", "app-payments@contoso.example.com",
                     "10.1.0.11"),
    "app-orders": ("8d3f2b51-2222-4b3c-8d4e-1234567890bc", "app-orders@contoso.example.com",
                   "10.1.0.12"),
    "storage-cmk-identity": ("9e4a3c62-3333-4c4d-9e5f-234567890acd", "storage@contoso.example.com",
                             "10.1.0.13"),
    "sql-tde-identity": ("af5b4d73-4444-4d5e-8f6a-34567890abde", "sql@contoso.example.com",
                         "10.1.0.14"),
    "kv-admin": ("b06c5e84-5555-4e6f-9a7b-4567890abcef", "kv-admin@contoso.example.com",
                 "198.51.100.10"),
    "eve": ("0f9e8d7c-6666-4b3a-8c9d-abcdefabcdef", "eve@contoso.example.com", "203.0.113.99"),
}
VAULT_ENT: Final[dict[str, tuple[str, list[str], str]]] = {
    "approle-payments": ("8c1f6e2a-5d2b-4d1e-9f7a-3b2c1d0e9f8a", ["default", "payments"],
                         "10.2.0.21"),
    "approle-orders": ("1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d", ["default", "orders"], "10.2.0.22"),
    "approle-reporting": ("2b3c4d5e-6f7a-4b2c-9d3e-4f5a6b7c8d9e", ["default", "reporting"],
                          "10.2.0.23"),
    "k8s-vault-agent": ("3c4d5e6f-7a8b-4c3d-8e4f-5a6b7c8d9e0f", ["default", "agent"], "10.2.0.30"),
    "rotation-bot": ("4d5e6f7a-8b9c-4d4e-9f5a-6b7c8d9e0f1a", ["default", "rotation"], "10.2.0.40"),
    "oidc-alice": ("5e6f7a8b-9c0d-4e5f-8a6b-7c8d9e0f1a2b", ["default", "vault-admins"],
                   "198.51.100.20"),
}


def build_estate() -> Estate:
    est = Estate()
    for name in AWS_KEYS:
        est.aws_keys[name] = _uuid("awskey", name)
    for app, keys, rate, business in AWS_APPS:
        ips = (f"10.0.{len(app) % 7}.{len(app) * 3 % 250}", f"10.0.{len(app) % 7}.{len(app) % 250}")
        for k in keys:
            share = rate / len(keys)
            if k in ("legacy-reports", "partner-import", "partner-expiring", "legacy-2022"):
                share = 0.8
            est.streams.append(Stream("aws", app, k, "Decrypt", share * 0.7, business, ips))
            est.streams.append(Stream("aws", app, k, "GenerateDataKey", share * 0.25, business,
                                      ips))
            est.streams.append(Stream("aws", app, k, "Encrypt", max(0.5, share * 0.05), business,
                                      ips))
    az = [("app-payments", "secrets", "db-password", "SecretGet", 2.0),
          ("app-payments", "secrets", "stripe-api-key", "SecretGet", 1.0),
          ("app-orders", "secrets", "servicebus-conn", "SecretGet", 1.5),
          ("app-orders", "secrets", "redis-password", "SecretGet", 1.5),
          ("storage-cmk-identity", "keys", "storage-cmk", "KeyUnwrap", 9.0),
          ("storage-cmk-identity", "keys", "storage-cmk", "KeyWrap", 3.0),
          ("sql-tde-identity", "keys", "sql-tde", "KeyUnwrap", 6.0),
          ("sql-tde-identity", "keys", "sql-tde", "KeyGet", 1.0)]
    for who, kind, name, action, rate in az:
        est.streams.append(Stream("azure", who, kv_uri(kind, name), action, rate,
                                  who.startswith("app")))
    vs = [("approle-payments", "transit/encrypt/payments", "update", 8.0),
          ("approle-payments", "transit/decrypt/payments", "update", 10.0),
          ("approle-orders", "transit/decrypt/orders", "update", 6.0),
          ("approle-orders", "secret/data/orders/config", "read", 2.0),
          ("approle-reporting", "secret/data/reporting/db", "read", 1.5),
          ("approle-reporting", "transit/decrypt/legacy-tokens", "update", 1.0),
          ("approle-payments", "auth/approle/login", "update", 1.0)]
    for who, path, op, rate in vs:
        est.streams.append(Stream("vault", who, path, op, rate, who != "approle-orders"))
    return est


def diurnal(hour: int, weekday: int, business: bool) -> float:
    f = 0.45 + 0.9 * math.exp(-(((hour - 14) / 4.0) ** 2))
    if business:
        return f * (0.45 if weekday >= 5 else 1.0)
    return 0.8 + 0.2 * f


# --- emitters shared by background and scenarios --------------------------------------------

class Sim:
    def __init__(self, out: Path, seed: int, days: int, scale: float) -> None:
        self.w = Writer(out)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.days = days
        self.scale = scale
        self.start = START
        self.end = START + days * DAY
        self.est = build_estate()
        self.hsm_seq: dict[str, int] = defaultdict(int)
        self.hsm_reboot: dict[str, int] = {"hsm-1a2b3c4d": 0x107, "hsm-5e6f7a8b": 0x3E}
        # (time, counter increment) per HSM: counters are a function of time, so events
        # emitted in any order carry the right value. One routine +1 maintenance reboot.
        self.boots: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.boots["hsm-5e6f7a8b"].append((self.start + (days // 2) * DAY + 2 * HOUR, 1))

    def reboot_at(self, hsm_id: str, t: float) -> int:
        return self.hsm_reboot[hsm_id] + sum(n for bt, n in self.boots[hsm_id] if bt <= t)

    def key(self, name: str) -> str:
        return karn(self.est.aws_keys[name])

    def state_error(self, target: str, t: float) -> str | None:
        for a, b, err in self.est.unusable.get(target, []):
            if a <= t < b:
                return err
        return None

    # AWS
    def aws_crypto(self, t: float, app: str, keyname: str, action: str, ip: str,
                   attack: bool = False, ident: dict[str, Any] | None = None,
                   key: str | None = None) -> None:
        k = key or self.key(keyname)
        params = CRYPTO_PARAMS[action](k)
        err = None
        code = self.state_error(keyname, t)
        if code:
            err = (code, f"{k} is {'disabled' if code == 'DisabledException' else 'pending'}.")
        self.w.cloudtrail(t, ct_record(t, action, ident or role_identity(app), k, params,
                                       error=err, ip=ip, read_only=True), attack)

    def aws_admin(self, t: float, name: str, who: dict[str, Any], keyname: str | None,
                  params: dict[str, Any] | None = None, resp: dict[str, Any] | None = None,
                  attack: bool = False, key: str | None = None, ip: str = "198.51.100.10",
                  service: bool = False, error: tuple[str, str] | None = None) -> None:
        k = key or (self.key(keyname) if keyname else None)
        self.w.cloudtrail(t, ct_record(t, name, who, k, params, resp, ip=ip,
                                       service_event=service, error=error), attack)

    def create_aws_key(self, t: float, name: str, origin: str = "AWS_KMS",
                       valid_to: float | None = None) -> None:
        kid = self.est.aws_keys[name]
        md = {"AWSAccountId": ACCT, "keyId": kid, "arn": karn(kid),
              "creationDate": time.strftime("%b %d, %Y, %I:%M:%S %p", time.gmtime(t)),
              "enabled": origin == "AWS_KMS", "keyUsage": "ENCRYPT_DECRYPT",
              "keyState": "Enabled" if origin == "AWS_KMS" else "PendingImport",
              "origin": origin, "keyManager": "CUSTOMER", "keySpec": "SYMMETRIC_DEFAULT",
              "customerMasterKeySpec": "SYMMETRIC_DEFAULT",
              "encryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}
        self.aws_admin(t, "CreateKey", role_identity("TerraformDeploy"), None,
                       {"keyUsage": "ENCRYPT_DECRYPT", "keySpec": "SYMMETRIC_DEFAULT",
                        "origin": origin, "description": name, "bypassPolicyLockoutSafetyCheck":
                        False}, {"keyMetadata": md}, key=karn(kid), ip="10.0.9.9")
        self.aws_admin(t + 2, "CreateAlias", role_identity("TerraformDeploy"), name,
                       {"aliasName": f"alias/{name}", "targetKeyId": kid}, ip="10.0.9.9")
        if origin == "EXTERNAL":
            vt = time.strftime("%b %d, %Y %I:%M:%S %p", time.gmtime(valid_to or t + 800 * DAY))
            self.aws_admin(t + 60, "ImportKeyMaterial", role_identity("KeyCeremony"), name,
                           {"keyId": kid, "validTo": vt,
                            "expirationModel": "KEY_MATERIAL_EXPIRES"}, ip="10.0.9.10")
        else:
            self.aws_admin(t + 5, "EnableKeyRotation", role_identity("TerraformDeploy"), name,
                           {"keyId": kid}, ip="10.0.9.9")

    def rotate_aws(self, t: float, name: str) -> None:
        kid = self.est.aws_keys[name]
        rec = ct_record(t, "RotateKey", SERVICE, None, None, service_event=True)
        rec["serviceEventDetails"] = {"keyId": kid}
        rec["resources"] = [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": karn(kid)}]
        self.w.cloudtrail(t, rec)

    # Azure
    def az(self, t: float, op: str, obj: str, who: str, status: int = 200,
           attack: bool = False, vault: str = "contoso-kv") -> None:
        oid, upn, ip = AZ_IDENT[who] if who in AZ_IDENT else eve(who)
        rec = az_record(t, op, obj, oid, upn, ip, status, vault)
        if who in AZ_APPS:  # a service principal / managed identity token carries no upn
            del rec["identity"]["claim"]["upn"]
        self.w.keyvault(t, vault, rec, attack)

    # Vault
    def vault(self, t: float, who: str, path: str, op: str, attack: bool = False,
              data: dict[str, Any] | None = None, resp: dict[str, Any] | None = None,
              error: str | None = None, root: bool = False, mount_type: str | None = None
              ) -> None:
        entity, pols, ip = VAULT_ENT.get(who, (None, ["default"], "203.0.113.77"))
        if root:
            entity, pols = None, ["root"]
        r1, r2 = vault_records(t, path, op, entity, "root" if root else who, pols, ip, data,
                               resp, error, mount_type)
        self.w.vault(t, r1, r2, attack)

    # HSM
    def hsm(self, t: float, hsm_id: str, opcode: str, code: int, handle: int,
            attack: bool = False, stream: str | None = None, **kw: Any) -> None:
        self.hsm_seq[hsm_id] += 1
        self.w.hsm(t, hsm_id, hsm_block(t, self.hsm_seq[hsm_id], self.reboot_at(hsm_id, t),
                                        opcode, code, handle, **kw), attack, stream)

    def hsm_session(self, t: float, hsm_id: str, user: str, ops: list[tuple[str, int, int]],
                    attack: bool = False, officer: bool = False,
                    stream: str | None = None) -> float:
        conn = 0x7000000 + (int(_hex(user, hsm_id, t, n=8), 16) % 0xFFFF) * 0x10
        utype = "CN_CRYPTO_OFFICER (2)" if officer else "CN_CRYPTO_USER (1)"
        self.hsm(t, hsm_id, "CN_LOGIN", 0xD, conn + 6, attack, stream, user=(user, utype))
        for i, (op, code, key) in enumerate(ops):
            if key < 0:
                self.hsm(t + 1 + i, hsm_id, op, code, conn + 7, attack, stream,
                         user=(f"user{-key}", "CN_CRYPTO_USER (1)"))
            else:
                self.hsm(t + 1 + i, hsm_id, op, code, conn + 3, attack, stream, key=key)
        self.hsm(t + 2 + len(ops), hsm_id, "CN_LOGOUT", 0xE, conn, attack, stream,
                 user=(user, utype))
        return t + 3 + len(ops)


# --- background ------------------------------------------------------------------------------

def history(sim: Sim) -> None:
    """Key creations and routine rotations before the window (so the inventory knows them)."""
    r = sim.rng
    for name in AWS_KEYS:
        if name == "legacy-2022":
            sim.create_aws_key(sim.start - 1100 * DAY, name)
            continue
        if name == "dormant-2024":
            t = sim.start - 260 * DAY
            sim.create_aws_key(t, name)
            for i in range(30):
                sim.aws_crypto(t + DAY + i * 3 * HOUR, "ReportingApp", name, "Decrypt",
                               "10.0.5.5")
            continue
        if name in ("partner-import", "partner-expiring"):
            valid = (sim.end + 5 * DAY) if name == "partner-expiring" else sim.end + 400 * DAY
            sim.create_aws_key(sim.start - float(r.integers(120, 250)) * DAY, name, "EXTERNAL",
                               valid)
            continue
        age = float(r.integers(100, 420))
        t0 = sim.start - age * DAY + float(r.integers(0, DAY))
        sim.create_aws_key(t0, name)
        if t0 + 365 * DAY < sim.end:  # automatic yearly rotation (maybe inside the window)
            sim.rotate_aws(t0 + 365 * DAY, name)
    for name, kind in (("storage-cmk", "keys"), ("sql-tde", "keys")):
        t = sim.start - 200 * DAY
        sim.az(t, "KeyCreate", kv_uri(kind, name) + "/" + _hex(name, n=32), "kv-admin")
    for name in ("payments", "orders", "legacy-tokens"):
        t = sim.start - 150 * DAY + len(name) * HOUR
        sim.vault(t, "oidc-alice", f"transit/keys/{name}", "update",
                  data={"type": "aes256-gcm96"})
    for hsm_id in sim.hsm_reboot:
        t = sim.start - 90 * DAY
        sim.hsm_session(t, hsm_id, "app_cu", [("CN_GENERATE_KEY", 0x17, 262152 + i)
                                              for i in range(3)])


def background(sim: Sim) -> None:
    r = sim.rng
    est = sim.est
    hours = sim.days * 24
    for s in est.streams:
        for h in range(hours):
            t_hour = sim.start + h * HOUR
            g = time.gmtime(t_hour)
            lam = s.rate * RATE * sim.scale * diurnal(g.tm_hour, g.tm_wday, s.business)
            n = int(r.poisson(lam))
            if not n:
                continue
            offs = np.sort(r.random(n)) * HOUR
            for off in offs:
                t = t_hour + float(off)
                ip = s.ips[int(off) % len(s.ips)]
                if s.kind == "aws":
                    sim.aws_crypto(t, s.principal, s.target, s.action, ip)
                elif s.kind == "azure":
                    sim.az(t, s.action, s.target + ("/" + _hex(s.target, n=32) if "/keys/" in
                                                    s.target else ""), s.principal)
                else:
                    _vault_stream(sim, t, s)
    _lookalikes(sim)


def _vault_stream(sim: Sim, t: float, s: Stream) -> None:
    path = s.target
    if path.startswith("transit/"):
        key = path.rsplit("/", 1)[1]
        err = sim.state_error("vault:" + key, t)
        if path.startswith("transit/encrypt"):
            sim.vault(t, s.principal, path, "update", data={"plaintext": "hmac-sha256:"
                      + _hex(t)}, resp=None if err else {"data": {"ciphertext": "hmac-sha256:"
                                                                  + _hex(t, 1)}}, error=err)
        else:
            sim.vault(t, s.principal, path, "update", data={"ciphertext": "hmac-sha256:"
                      + _hex(t)}, resp=None if err else {"data": {"plaintext": "hmac-sha256:"
                                                                  + _hex(t, 1)}}, error=err)
    elif path.startswith("auth/"):
        sim.vault(t, s.principal, path, "update", data={"role_id": "hmac-sha256:" + _hex("r")},
                  resp={"auth": {"client_token": "hmac-sha256:" + _hex(t), "accessor":
                                 "hmac-sha256:" + _hex(t, 2), "policies": ["default", "payments"],
                                 "token_policies": ["default", "payments"]}}, mount_type="approle")
    else:
        sim.vault(t, s.principal, path, "read", mount_type="kv",
                  resp={"data": {"data": {"value": "hmac-sha256:" + _hex(path)}}})


def _lookalikes(sim: Sim) -> None:
    """Benign events that resemble attacks: the detectors must stay quiet on them."""
    r = sim.rng
    alice = user_identity("Alice")
    for d in range(sim.days):
        day = sim.start + d * DAY
        wd = time.gmtime(day).tm_wday
        # Admin reads on weekdays.
        if wd < 5:
            for _i in range(max(1, int(3 * sim.scale))):
                t = day + 9 * HOUR + float(r.integers(0, 8 * HOUR))
                k = AWS_KEYS[int(r.integers(0, 12))]
                sim.aws_admin(t, "DescribeKey", alice, k, {"keyId": f"alias/{k}"})
                sim.aws_admin(t + 3, "GetKeyPolicy", alice, k, {"keyId": sim.est.aws_keys[k],
                                                                 "policyName": "default"})
                sim.aws_admin(t + 5, "ListAliases", alice, None, {"limit": 100})
            sim.az(day + 10 * HOUR + float(r.integers(0, 6 * HOUR)), "VaultGet",
                   "https://contoso-kv.vault.azure.net/", "kv-admin")
            sim.az(day + 10 * HOUR + float(r.integers(0, 6 * HOUR)), "SecretList",
                   "https://contoso-kv.vault.azure.net/secrets", "kv-admin")
            sim.vault(day + 11 * HOUR + float(r.integers(0, 4 * HOUR)), "oidc-alice",
                      "sys/policies/acl/payments", "read", mount_type="system")
            sim.vault(day + 11 * HOUR + float(r.integers(0, 4 * HOUR)), "oidc-alice",
                      "sys/audit", "read", mount_type="system")
        # EBS volume attach: service-infrastructure grant.
        t = day + float(r.integers(0, DAY))
        sim.aws_admin(t, "CreateGrant", role_identity("AWSServiceRoleForAutoScaling"), "datalake",
                      {"keyId": sim.key("datalake"),
                       "granteePrincipal": f"{ACCT}:aws:ec2-infrastructure:i-{_hex(t, n=16)}",
                       "operations": ["Decrypt"], "constraints": {"encryptionContextSubset":
                                                                  {"aws:ebs:id": "vol-0ab12"}}},
                      {"grantId": _hex(t, "g")}, ip="10.0.3.3")
        # Benign denials: a misconfigured client tries a key it may not use (1-3 times).
        for _ in range(int(r.poisson(2 * sim.scale))):
            t = day + float(r.integers(0, DAY))
            for j in range(int(r.integers(1, 4))):
                sim.aws_admin(t + j * 20, "Decrypt", role_identity("WebFrontend"), "billing",
                              {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"},
                              error=("AccessDeniedException", "not authorized to perform: "
                                     "kms:Decrypt"), ip="10.0.2.2")
        # App restarts: read own secrets a few times in a minute.
        t = day + float(r.integers(0, DAY))
        for j in range(6):
            secret = ("db-password", "stripe-api-key")[j % 2]
            sim.az(t + j * 7, "SecretGet", kv_uri("secrets", secret), "app-payments")
        sim.az(t + 60, "SecretGet", kv_uri("secrets", "feature-flags-old"), "app-payments",
               status=404)
        # Vault Agent restarts: reads its templates once.
        t = day + float(r.integers(0, DAY))
        for j in range(8):
            sim.vault(t + j * 0.3, "k8s-vault-agent", f"secret/data/agent/tpl-{j}", "read",
                      mount_type="kv", resp={"data": {"data": {"v": "hmac-sha256:" + _hex(j)}}})
        sim.vault(t + 5, "approle-payments", "transit/export/public-key/signing", "read")
        sim.vault(t + 9, "oidc-alice", "auth/token/create", "update", mount_type="token",
                  data={"policies": ["reporting"]},
                  resp={"auth": {"client_token": "hmac-sha256:" + _hex(t, "c"), "accessor":
                                 "hmac-sha256:" + _hex(t, "a"), "orphan": False,
                                 "policies": ["default", "reporting"],
                                 "token_policies": ["default", "reporting"]}})
        # HSM: application sessions, key generation + cluster sync, occasional failed login.
        for hsm_id in sim.hsm_reboot:
            for _ in range(max(1, int(4 * sim.scale))):
                t = day + float(r.integers(0, DAY))
                sim.hsm_session(t, hsm_id, "app_cu", [("CN_GET_ATTRIBUTE_VALUE", 0x32, 262152)])
            if r.random() < 0.3:
                t = day + float(r.integers(0, DAY))
                h = 262200 + d
                sim.hsm_session(t, hsm_id, "app_cu", [("CN_GENERATE_KEY", 0x17, h),
                                                      ("CN_EXTRACT_MASKED_OBJECT_USER", 0xF0, h)])
            if r.random() < 0.3:
                t = day + float(r.integers(0, DAY))
                sim.hsm(t, hsm_id, "CN_LOGIN", 0xD, 0xC008002, ok=False,
                        user=("app_cu", "CN_CRYPTO_USER (1)"))
        # Weekly routine transit rotation by the rotation bot.
        if wd == 6:
            t = day + 3 * HOUR
            for key in ("payments", "orders"):
                sim.vault(t, "rotation-bot", f"transit/keys/{key}/rotate", "update")
    # The maintenance reboot of an HSM mid-window (+1 is normal) leaves its boot record.
    for hsm_id, boots in sim.boots.items():
        for bt, n in boots:
            if n == 1:
                sim.hsm(bt, hsm_id, "CN_INIT_DONE", 0x95, 0x1004001)


# --- routine operations (docs/benign-model.md) ---------------------------------------------
# Built from how these systems are operated, not from the detectors: HSM session keys,
# HA clusters logging into one stream, designated services (tokenization, backup, deploys,
# rotation), infrastructure as code, new automation identities and ticketed break-glass.

AZ_APPS: Final[dict[str, tuple[str, str, str]]] = {
    "kv-backup-job": ("c17d6f95-7777-4f70-8b8c-567890abcdef", "", "10.1.0.40"),
    "deploy-pipeline": ("d28e7aa6-8888-4a81-9c9d-67890abcdef0", "", "10.1.0.41"),
    "terraform-sp": ("e39f8bb7-9999-4b92-8dae-7890abcdef01", "", "10.1.0.42"),
    "secret-rotator": ("f4a09cc8-aaaa-4ca3-9ebf-890abcdef012", "", "10.1.0.43"),
}
AZ_IDENT.update(AZ_APPS)
CLUSTER: Final[str] = "cluster-2b7c9e1f"
CLUSTER_HSMS: Final[dict[str, int]] = {"hsm-c1a00001": 0x21, "hsm-c1a00002": 0x5C}
APP_SECRETS: Final[list[str]] = [
    "db-password", "stripe-api-key", "servicebus-conn", "redis-password", "smtp-password",
    "storage-conn", "cosmos-key", "appinsights-key", "jwt-signing-secret", "oauth-client-secret",
    "feature-flags", "search-admin-key", "cdn-token", "sendgrid-key", "twilio-token",
    "partner-api-key", "ldap-bind-password", "cache-conn", "queue-conn", "grafana-token"]
TICKETS: Final[tuple[str, ...]] = ("CHG0045123", "INC0078410", "CHG0046007")


def routine_operations(sim: Sim) -> None:
    _hsm_cluster(sim)
    _azure_operations(sim)
    _aws_operations(sim)
    _vault_operations(sim)


def _hsm_cluster(sim: Sim) -> None:
    """Two HSMs of one HA cluster logging into one file, each with its own counters.

    A payment application creates a session key per transaction batch, wraps/unwraps with
    it and destroys it within seconds to minutes (PKCS#11 CKA_TOKEN=false objects: they die
    with the session, and 30% of the time only the session's end says so: no destroy
    record); a tokenization service wraps with its long-lived KEK all day.
    """
    r = sim.rng
    for hsm_id, boot in CLUSTER_HSMS.items():
        sim.hsm_reboot[hsm_id] = boot
    # One routine maintenance reboot (+1) of the second device, with its boot record.
    devices = list(CLUSTER_HSMS)
    bt = sim.start + (sim.days // 3) * DAY + 3 * HOUR + 600
    sim.boots[devices[1]].append((bt, 1))
    sim.hsm(bt, devices[1], "CN_INIT_DONE", 0x95, 0x1004001, stream=CLUSTER)
    kek = 0x40100
    sim.hsm_session(sim.start - 120 * DAY, devices[0], "tok_svc",
                    [("CN_GENERATE_KEY", 0x17, kek)], stream=CLUSTER)
    handle = 0x80000
    for h in range(sim.days * 24):
        t_hour = sim.start + h * HOUR
        g = time.gmtime(t_hour)
        for _ in range(int(r.poisson(1.6 * sim.scale * diurnal(g.tm_hour, g.tm_wday, True)))):
            handle += 1
            dev = devices[int(r.integers(0, 2))]
            t = t_hour + float(r.integers(0, HOUR - 300))
            life = float(r.choice([2.0, 5.0, 30.0, 90.0, 240.0]))
            conn = 0x7100000 + (handle % 0xFFF) * 0x10
            sim.hsm(t, dev, "CN_LOGIN", 0xD, conn + 6, stream=CLUSTER,
                    user=("pay_app", "CN_CRYPTO_USER (1)"))
            sim.hsm(t + 0.2, dev, "CN_GENERATE_KEY", 0x17, conn + 3, stream=CLUSTER, key=handle)
            sim.hsm(t + 0.4, dev, "CN_NIST_AES_WRAP_PAD", 0x1C, conn + 3, stream=CLUSTER,
                    key=handle)
            sim.hsm(t + life / 2, dev, "CN_UNWRAP_KEY", 0x1B, conn + 3, stream=CLUSTER,
                    key=handle)
            if r.random() < 0.7:  # else the object dies with its session, unlogged
                sim.hsm(t + life, dev, "CN_DESTROY_OBJECT", 0x11, conn + 3, stream=CLUSTER,
                        key=handle)
            sim.hsm(t + life + 0.2, dev, "CN_LOGOUT", 0xE, conn, stream=CLUSTER,
                    user=("pay_app", "CN_CRYPTO_USER (1)"))
        for _ in range(int(r.poisson(2.0 * sim.scale))):
            t = t_hour + float(r.integers(0, HOUR - 10))
            sim.hsm_session(t, devices[int(r.integers(0, 2))], "tok_svc",
                            [("CN_NIST_AES_WRAP_PAD", 0x1C, kek)], stream=CLUSTER)


def _azure_operations(sim: Sim) -> None:
    r = sim.rng
    for d in range(sim.days):
        day = sim.start + d * DAY
        wd = time.gmtime(day).tm_wday
        # Nightly backup job: every key and secret, one after the other.
        t = day + 1 * HOUR + 30 * 60 + float(r.integers(0, 300))
        for name in ("storage-cmk", "sql-tde"):
            sim.az(t, "KeyBackup", kv_uri("keys", name), "kv-backup-job")
            t += 2.0
        for name in APP_SECRETS[:6]:
            sim.az(t, "SecretBackup", kv_uri("secrets", name), "kv-backup-job")
            t += 2.0
        # Deployment rollouts (Tue/Thu): the pipeline reads every app secret in one burst.
        if wd in (1, 3):
            t = day + float(r.integers(10, 16)) * HOUR + float(r.integers(0, HOUR))
            for j, name in enumerate(APP_SECRETS):
                sim.az(t + j * 0.7, "SecretGet", kv_uri("secrets", name), "deploy-pipeline")
        # Infrastructure as code: terraform apply patches tags / network rules on weekdays.
        if wd < 5:
            t = day + float(r.integers(7, 18)) * HOUR + float(r.integers(0, HOUR))
            for j in range(int(r.integers(1, 3))):
                sim.az(t + j * 40, "VaultPatch", "https://contoso-kv.vault.azure.net/",
                       "terraform-sp")
        # Secret rotation function, weekly: set a new version, read it back.
        if wd == 2:
            t = day + 4 * HOUR + float(r.integers(0, 600))
            for j, name in enumerate(("db-password", "redis-password")):
                sim.az(t + j * 5, "SecretSet", kv_uri("secrets", name), "secret-rotator")
                sim.az(t + j * 5 + 1, "SecretGet", kv_uri("secrets", name), "secret-rotator")


def _aws_operations(sim: Sim) -> None:
    r = sim.rng
    tf = role_identity("TerraformDeploy")
    app_keys = {a: ks for a, ks, _, _ in AWS_APPS}
    for d in range(sim.days):
        day = sim.start + d * DAY
        wd = time.gmtime(day).tm_wday
        # The IaC pipeline re-applies key policies (and tags) on every weekday run.
        if wd < 5:
            t = day + float(r.integers(6, 20)) * HOUR + float(r.integers(0, HOUR))
            for j in range(int(r.integers(1, 4))):
                k = AWS_KEYS[int(r.integers(0, 12))]
                users = [role_arn(a) for a, ks in app_keys.items() if k in ks] or [
                    role_arn("ReportingApp")]
                sim.aws_admin(t + j * 20, "PutKeyPolicy", tf, k, {
                    "keyId": sim.est.aws_keys[k], "policyName": "default", "policy": _policy(
                        {"Sid": "AllowUse", "Effect": "Allow", "Principal": {"AWS": users},
                         "Action": ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"],
                         "Resource": "*"})}, ip="10.0.9.9")
                sim.aws_admin(t + j * 20 + 3, "TagResource", tf, k, {
                    "keyId": sim.est.aws_keys[k], "tags": [{"tagKey": "owner",
                                                            "tagValue": "platform"}]},
                              ip="10.0.9.9")
    # The IaC pipeline also re-applies the trail's event selectors (still recording KMS) and,
    # on Mondays, the vault's diagnostic setting (still exporting AuditEvent).
    for d in range(0, sim.days, 7):
        t = sim.start + d * DAY + 7 * HOUR + float(r.integers(0, HOUR))
        sim.w.cloudtrail(t, trail_record(t, "PutEventSelectors", tf, {
            "trailName": TRAIL, "eventSelectors": [{
                "readWriteType": "All", "includeManagementEvents": True,
                "dataResources": [{"type": "AWS::S3::Object",
                                   "values": ["arn:aws:s3:::payments-data/"]}]}]}, "10.0.9.9"))
        oid, _, ip = AZ_APPS["terraform-sp"]
        sim.w.activity(t + 60, activity_record(
            t + 60, "Microsoft.Insights/diagnosticSettings/write", DIAG_RID, oid, "", ip,
            {"properties": {"workspaceId": "/subscriptions/x/resourceGroups/prod/providers/"
                            "microsoft.operationalinsights/workspaces/soc",
                            "logs": [{"categoryGroup": "audit", "enabled": True}]}}))
    # Ticketed break-glass: an on-call engineer assumes the break-glass role naming the
    # change/incident ticket in the session name, inspects and decrypts once.
    for n, tk in enumerate(TICKETS[: max(1, sim.days // 12)]):
        t = sim.start + (9 + 8 * n) * DAY + float(r.integers(8, 20)) * HOUR
        ident = role_identity("BreakGlassAdmin")
        ident["arn"] = f"arn:aws:sts::{ACCT}:assumed-role/BreakGlassAdmin/{tk}-oncall"
        sim.aws_admin(t, "DescribeKey", ident, "payments", {"keyId": "alias/payments"},
                      ip="198.51.100.30")
        sim.aws_crypto(t + 60, "BreakGlassAdmin", "payments", "Decrypt", "198.51.100.30",
                       ident=ident)


def _vault_operations(sim: Sim) -> None:
    """CI runners are recycled weekly: each new runner is a new Vault entity with the same
    role (policies) as the ones before it, encrypting build artefacts with the orders key."""
    r = sim.rng
    for week in range(sim.days // 7 + 1):
        name = f"ci-runner-{week}"
        VAULT_ENT[name] = (_uuid("ci-runner", week), ["default", "ci-build"],
                           f"10.2.1.{10 + week}")
        for d in range(week * 7, min(sim.days, week * 7 + 7)):
            day = sim.start + d * DAY
            for _ in range(int(r.poisson(6 * sim.scale))):
                t = day + float(r.integers(8 * HOUR, 20 * HOUR))
                sim.vault(t, name, "auth/approle/login", "update", mount_type="approle",
                          data={"role_id": "hmac-sha256:" + _hex("ci")},
                          resp={"auth": {"client_token": "hmac-sha256:" + _hex(t),
                                         "accessor": "hmac-sha256:" + _hex(t, 3),
                                         "policies": ["default", "ci-build"],
                                         "token_policies": ["default", "ci-build"]}})
                sim.vault(t + 1, name, "transit/encrypt/orders", "update",
                          data={"plaintext": "hmac-sha256:" + _hex(t)},
                          resp={"data": {"ciphertext": "hmac-sha256:" + _hex(t, 1)}})


# --- attacks ---------------------------------------------------------------------------------

@dataclass
class Label:
    scenario: str
    kind: str
    detectors: list[str]
    match: list[str]
    start: float
    end: float
    also: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "type": self.kind, "detectors": self.detectors,
                "also": self.also, "match": self.match, "start": ct_time(self.start),
                "end": ct_time(self.end)}


Scenario = Callable[[Sim, float, int], Label]


def sc_kms_disable(sim: Sim, t: float, i: int) -> Label:
    m = user_identity(f"mallory{i}")
    k = "legacy-reports"
    sim.aws_admin(t, "DisableKey", m, k, {"keyId": sim.est.aws_keys[k]}, attack=True,
                  ip="203.0.113.66")
    sim.aws_admin(t + 60, "ScheduleKeyDeletion", m, k,
                  {"keyId": sim.est.aws_keys[k], "pendingWindowInDays": 7},
                  {"keyId": sim.key(k), "keyState": "PendingDeletion", "pendingWindowInDays": 7},
                  attack=True, ip="203.0.113.66")
    back = t + 3 * HOUR
    sim.est.unusable[k].append((t, t + 60, "DisabledException"))
    sim.est.unusable[k].append((t + 60, back, "KMSInvalidStateException"))
    sim.aws_admin(back, "CancelKeyDeletion", user_identity("Alice"), k,
                  {"keyId": sim.est.aws_keys[k]})
    sim.aws_admin(back + 30, "EnableKey", user_identity("Alice"), k,
                  {"keyId": sim.est.aws_keys[k]})
    return Label("", "kms_disable_and_schedule_deletion",
                 ["kms_key_disabled_or_deletion_scheduled"], [sim.key(k), f"mallory{i}"], t,
                 back, also=["key_used_while_unusable", "kms_denied_burst", "key_usage_anomaly"])


def sc_kms_material(sim: Sim, t: float, i: int) -> Label:
    k = "partner-import"
    sim.aws_admin(t, "DeleteImportedKeyMaterial", user_identity(f"mallory{i}"), k,
                  {"keyId": sim.est.aws_keys[k]}, attack=True, ip="203.0.113.66")
    sim.est.unusable[k].append((t, sim.end + DAY, "KMSInvalidStateException"))
    return Label("", "kms_imported_material_deleted", ["kms_imported_key_material_changed"],
                 [sim.key(k)], t, sim.end, also=["key_used_while_unusable", "kms_denied_burst",
                                                 "key_usage_anomaly"])


def _policy(extra: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
         "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*", "Resource": "*"},
        extra]}, indent=2)


def sc_policy_public(sim: Sim, t: float, i: int) -> Label:
    k = AWS_KEYS[i % 8]
    sim.aws_admin(t, "PutKeyPolicy", user_identity(f"mallory{i}"), k,
                  {"keyId": sim.est.aws_keys[k], "policyName": "default", "policy": _policy(
                      {"Sid": "x", "Effect": "Allow", "Principal": {"AWS": "*"},
                       "Action": "kms:Decrypt", "Resource": "*"})}, attack=True,
                  ip="203.0.113.66")
    return Label("", "kms_policy_public", ["kms_key_policy_opened"], [sim.key(k)], t, t + 1)


def sc_policy_cross(sim: Sim, t: float, i: int) -> Label:
    k = AWS_KEYS[(i + 3) % 8]
    sim.aws_admin(t, "PutKeyPolicy", user_identity("Alice"), k,
                  {"keyId": sim.est.aws_keys[k], "policyName": "default", "policy": _policy(
                      {"Sid": "Partner", "Effect": "Allow",
                       "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
                       "Action": ["kms:Decrypt"], "Resource": "*"})}, attack=True)
    return Label("", "kms_policy_cross_account", ["kms_key_policy_opened"], [sim.key(k)], t,
                 t + 1)


def sc_policy_changed(sim: Sim, t: float, i: int) -> Label:
    k = AWS_KEYS[(i + 5) % 8]
    sim.aws_admin(t, "PutKeyPolicy", user_identity(f"mallory{i}"), k,
                  {"keyId": sim.est.aws_keys[k], "policyName": "default", "policy": _policy(
                      {"Sid": "Ops", "Effect": "Allow",
                       "Principal": {"AWS": user_arn(f"mallory{i}")},
                       "Action": "kms:*", "Resource": "*"})}, attack=True, ip="203.0.113.66")
    return Label("", "kms_policy_changed", ["kms_key_policy_changed"], [sim.key(k)], t, t + 1)


def sc_grant(sim: Sim, t: float, i: int) -> Label:
    k = AWS_KEYS[(i + 1) % 8]
    sim.aws_admin(t, "CreateGrant", user_identity(f"mallory{i}"), k,
                  {"keyId": sim.key(k), "granteePrincipal": role_arn("Collector", OTHER),
                   "operations": ["Decrypt", "GenerateDataKey"]}, {"grantId": _hex(t)},
                  attack=True, ip="203.0.113.66")
    return Label("", "kms_grant_cross_account", ["kms_grant_to_unexpected_principal"],
                 [sim.key(k)], t, t + 1)


def sc_ransomware(sim: Sim, t: float, i: int) -> Label:
    ext = karn(_uuid("attacker-key", i), OTHER)
    ident = role_identity("DataPipeline")
    for j in range(200):
        sim.aws_crypto(t + j * 3, "DataPipeline", "datalake", "GenerateDataKey", "10.0.3.3",
                       attack=True, ident=ident, key=ext)
    return Label("", "kms_ransomware_foreign_key", ["kms_cross_account_key_encryption"],
                 [ext], t, t + 600, also=["key_unknown_asset", "key_new_principal"])


def sc_denied_burst(sim: Sim, t: float, i: int) -> Label:
    m = user_identity(f"mallory{i}")
    for j in range(25):
        k = AWS_KEYS[j % 12]
        sim.aws_admin(t + j * 4, "Decrypt", m, k, {"keyId": sim.key(k)},
                      error=("AccessDeniedException", "not authorized to perform: kms:Decrypt"),
                      attack=True, ip="203.0.113.66")
    return Label("", "kms_denied_burst", ["kms_denied_burst"], [user_arn(f"mallory{i}")], t,
                 t + 120)


def sc_akv_delete_purge(sim: Sim, t: float, i: int) -> Label:
    obj = kv_uri("secrets", f"ftp-password-{i}")
    sim.az(t - 5 * DAY, "SecretSet", obj, "kv-admin")
    sim.az(t, "SecretDelete", obj, f"eve{i}", attack=True)
    sim.az(t + 120, "SecretPurge", kv_uri("deletedsecrets", f"ftp-password-{i}"), f"eve{i}",
           status=204, attack=True)
    return Label("", "akv_delete_and_purge", ["akv_object_deleted", "akv_object_purged"],
                 [f"ftp-password-{i}"], t, t + 120)


def sc_akv_backup(sim: Sim, t: float, i: int) -> Label:
    obj = kv_uri("keys", "storage-cmk")
    sim.az(t, "KeyBackup", obj, f"eve{i}", attack=True)
    return Label("", "akv_key_backup", ["akv_backup_restore_recover"], ["storage-cmk"], t, t + 1,
                 also=["akv_rare_identity_read"])


def sc_akv_churn(sim: Sim, t: float, i: int) -> Label:
    sim.az(t, "VaultPatch", "https://contoso-kv.vault.azure.net/", f"eve{i}", attack=True)
    sim.az(t + 300, "SecretGet", kv_uri("secrets", "db-password"), f"eve{i}", attack=True)
    sim.az(t + 900, "VaultPatch", "https://contoso-kv.vault.azure.net/", f"eve{i}", attack=True)
    return Label("", "akv_access_policy_add_remove",
                 ["akv_access_policy_changed", "akv_access_policy_churn"],
                 ["contoso-kv", eve(f"eve{i}")[0]], t, t + 900, also=["akv_rare_identity_read"])


def sc_akv_burst(sim: Sim, t: float, i: int) -> Label:
    for j in range(30):
        sim.az(t + j * 1.5, "SecretGet", kv_uri("secrets", f"svc-{j}-credential"), f"eve{i}",
               attack=True)
    return Label("", "akv_burst_retrieval", ["akv_burst_retrieval"], [eve(f"eve{i}")[0]], t,
                 t + 45, also=["akv_rare_identity_read"])


def sc_akv_rare(sim: Sim, t: float, i: int) -> Label:
    sim.az(t, "SecretGet", kv_uri("secrets", "stripe-api-key"), f"eve{i}", attack=True)
    return Label("", "akv_rare_identity_read", ["akv_rare_identity_read"],
                 [eve(f"eve{i}")[0]], t, t + 1)


def sc_akv_volume(sim: Sim, t: float, i: int) -> Label:
    day = t - t % DAY
    n = int(2000 + 2500 * sim.scale)
    for j in range(n):
        sim.az(day + j * (DAY - 60) / n, "SecretGet", kv_uri("secrets", "servicebus-conn"),
               "app-orders", attack=True)
    return Label("", "akv_daily_volume", ["akv_daily_volume_anomaly"], ["contoso-kv"], day,
                 day + DAY, also=["key_usage_anomaly"])


def sc_vault_root(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "root", "sys/policies/acl/payments", "update", attack=True, root=True,
              data={"policy": "hmac-sha256:" + _hex(t)}, mount_type="system")
    sim.vault(t + 30, "root", "secret/data/orders/config", "read", attack=True, root=True,
              mount_type="kv")
    return Label("", "vault_root_token", ["vault_root_token_used", "vault_policy_changed"],
                 ["root_token", "sys/policies/acl/payments"], t, t + 30)


def sc_vault_audit(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "oidc-alice", "sys/audit/file", "delete", attack=True, mount_type="system")
    return Label("", "vault_audit_disabled", ["vault_audit_device_changed"], ["sys/audit/file"],
                 t, t + 1)


def sc_vault_export(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "oidc-alice", "transit/keys/payments/config", "update", attack=True,
              data={"exportable": True, "allow_plaintext_backup": True})
    sim.vault(t + 60, "oidc-alice", "transit/export/encryption-key/payments", "read",
              attack=True, resp={"data": {"keys": {"1": "hmac-sha256:" + _hex(t)}}})
    return Label("", "vault_transit_export",
                 ["vault_transit_key_made_exportable", "vault_transit_key_exported"],
                 ["vault://default/transit/keys/payments"], t, t + 60,
                 also=["key_separation_of_duties"])


def sc_vault_delete(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "oidc-alice", "transit/keys/legacy-tokens/config", "update", attack=True,
              data={"deletion_allowed": True})
    sim.vault(t + 60, "oidc-alice", "transit/keys/legacy-tokens", "delete", attack=True)
    sim.est.unusable["vault:legacy-tokens"].append((t + 60, sim.end + DAY,
                                                    "encryption key not found"))
    return Label("", "vault_transit_delete",
                 ["vault_transit_key_made_exportable", "vault_transit_key_deleted"],
                 ["vault://default/transit/keys/legacy-tokens"], t, sim.end,
                 also=["key_used_while_unusable", "key_usage_anomaly"])


def sc_vault_seal(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "oidc-alice", "sys/generate-root/attempt", "update", attack=True,
              data={"pgp_key": "hmac-sha256:" + _hex(t)}, mount_type="system")
    return Label("", "vault_generate_root", ["vault_seal_or_rekey"], ["seal|generate-root"],
                 t, t + 1)


def sc_vault_burst(sim: Sim, t: float, i: int) -> Label:
    for j in range(60):
        sim.vault(t + j * 0.8, "approle-reporting", f"secret/data/teams/t{j}/db", "read",
                  attack=True, mount_type="kv")
    return Label("", "vault_secret_sweep", ["vault_burst_reads"],
                 [VAULT_ENT["approle-reporting"][0]], t, t + 50)


def sc_vault_orphan(sim: Sim, t: float, i: int) -> Label:
    sim.vault(t, "approle-reporting", "auth/token/create-orphan", "update", attack=True,
              mount_type="token", data={"policies": ["reporting"]},
              resp={"auth": {"client_token": "hmac-sha256:" + _hex(t), "accessor":
                             "hmac-sha256:" + _hex(t, 1), "orphan": True,
                             "policies": ["default", "reporting"],
                             "token_policies": ["default", "reporting"]}})
    return Label("", "vault_orphan_token", ["vault_orphan_token_created"],
                 [VAULT_ENT["approle-reporting"][0]], t, t + 1)


def sc_hsm_wrap(sim: Sim, t: float, i: int) -> Label:
    sim.hsm_session(t, "hsm-1a2b3c4d", "app_cu", [("CN_WRAP_KEY", 0x1A, 262153)], attack=True)
    return Label("", "hsm_key_wrap_out", ["hsm_key_extraction"], ["cloudhsm://default/262153"],
                 t, t + 5)


def sc_hsm_share(sim: Sim, t: float, i: int) -> Label:
    sim.hsm_session(t, "hsm-1a2b3c4d", "app_cu", [("CN_SHARE_OBJECT", 0x12, 262154)],
                    attack=True)
    return Label("", "hsm_key_share", ["hsm_key_shared"], ["262154"], t, t + 5)


def sc_hsm_co(sim: Sim, t: float, i: int) -> Label:
    sim.hsm_session(t, "hsm-5e6f7a8b", "admin", [("CN_CREATE_CO", 0x4, -9)], attack=True,
                    officer=True)
    return Label("", "hsm_crypto_officer_created", ["hsm_user_created"], ["user:user9"], t, t + 5)


def sc_hsm_quorum(sim: Sim, t: float, i: int) -> Label:
    sim.hsm_session(t, "hsm-5e6f7a8b", "admin", [("CN_SET_M_VALUE", 0x5A, 0)], attack=True,
                    officer=True)
    return Label("", "hsm_quorum_lowered", ["hsm_quorum_changed"], ["quorum"], t, t + 5)


def sc_hsm_brute(sim: Sim, t: float, i: int) -> Label:
    for j in range(8):
        sim.hsm(t + j * 20, "hsm-1a2b3c4d", "CN_LOGIN", 0xD, 0xC008012, attack=True, ok=False,
                user=("admin", "CN_CRYPTO_OFFICER (2)"))
    return Label("", "hsm_password_guessing", ["hsm_login_failures"], ["/admin"], t, t + 160)


def sc_hsm_reboot(sim: Sim, t: float, i: int) -> Label:
    hsm_id = "hsm-1a2b3c4d"  # the +3 boot was registered by generate() before any emission
    sim.hsm(t, hsm_id, "CN_INIT_DONE", 0x95, 0x1004001, attack=True)
    return Label("", "hsm_unlogged_reboots", ["hsm_reboot_counter_jump"], [hsm_id], t - DAY,
                 t + DAY)


def sc_new_principal(sim: Sim, t: float, i: int) -> Label:
    for j in range(5):
        sim.aws_crypto(t + j * 40, f"Contractor{i}", "payments", "Decrypt", "203.0.113.40",
                       attack=True)
    return Label("", "kms_new_principal", ["key_new_principal"], [role_arn(f"Contractor{i}")],
                 t, t + 200)


def sc_sod(sim: Sim, t: float, i: int) -> Label:
    k = "billing"
    bob = user_identity(f"bob{i}")
    sim.aws_admin(t, "PutKeyPolicy", bob, k, {"keyId": sim.est.aws_keys[k], "policyName":
                                              "default", "policy": _policy(
        {"Sid": "Bob", "Effect": "Allow", "Principal": {"AWS": user_arn(f"bob{i}")},
         "Action": "kms:Decrypt", "Resource": "*"})}, attack=True, ip="198.51.100.50")
    for j in range(3):
        sim.aws_crypto(t + 600 + j * 30, "", k, "Decrypt", "198.51.100.50", attack=True,
                       ident=bob)
    return Label("", "separation_of_duties", ["key_separation_of_duties"], [user_arn(f"bob{i}")],
                 t, t + 700, also=["kms_key_policy_changed", "key_new_principal"])


def sc_rotation_overdue(sim: Sim, t: float, i: int) -> Label:
    return Label("", "rotation_overdue", ["key_rotation_overdue"], [sim.key("legacy-2022")],
                 sim.start, sim.end)


def sc_dormant(sim: Sim, t: float, i: int) -> Label:
    return Label("", "dormant_key", ["key_dormant"], [sim.key("dormant-2024")],
                 sim.start - 260 * DAY, sim.end)


def sc_expiry(sim: Sim, t: float, i: int) -> Label:
    return Label("", "imported_material_expiring", ["key_expiry_approaching"],
                 [sim.key("partner-expiring")], sim.start, sim.end + DAY)


def sc_unknown(sim: Sim, t: float, i: int) -> Label:
    for j in range(40):
        sim.vault(t + j * 300, "approle-orders", f"transit/encrypt/shadow-{i}", "update",
                  attack=True, data={"plaintext": "hmac-sha256:" + _hex(j)},
                  resp={"data": {"ciphertext": "hmac-sha256:" + _hex(j, 1)}})
    return Label("", "unknown_key_in_use", ["key_unknown_asset"],
                 [f"vault://default/transit/keys/shadow-{i}"], t, t + 40 * 300)


def sc_anomaly(sim: Sim, t: float, i: int) -> Label:
    day = t - t % DAY
    n = int(400 * max(1.0, sim.scale))
    for j in range(n):
        sim.aws_crypto(day + 3600 + j * (DAY - 7200) / n, "BackupSvc", "backups", "Decrypt",
                       "10.0.6.6", attack=True)
    return Label("", "bulk_decrypt", ["key_usage_anomaly"], [role_arn("BackupSvc")], day,
                 day + DAY)


def sc_trail_stop(sim: Sim, t: float, i: int) -> Label:
    m = user_identity(f"mallory{i}")
    sim.w.cloudtrail(t, trail_record(t, "PutEventSelectors", m, {
        "trailName": TRAIL, "eventSelectors": [{
            "readWriteType": "All", "includeManagementEvents": True,
            "excludeManagementEventSources": ["kms.amazonaws.com"], "dataResources": []}]},
        "203.0.113.66"), attack=True)
    return Label("", "cloudtrail_kms_excluded", ["cloudtrail_kms_logging_stopped"],
                 [f"trail:{TRAIL}", f"mallory{i}"], t, t + 1)


def sc_akv_diag_delete(sim: Sim, t: float, i: int) -> Label:
    oid, upn, ip = eve(f"eve{i}")
    sim.w.activity(t, activity_record(t, "Microsoft.Insights/diagnosticSettings/delete",
                                      DIAG_RID, oid, upn, ip), attack=True)
    return Label("", "akv_audit_logging_deleted", ["akv_audit_logging_changed"],
                 ["vault:contoso-kv|diagnostics"], t, t + 1)


SCENARIOS: Final[list[tuple[Scenario, str]]] = [
    (sc_trail_stop, "night"), (sc_akv_diag_delete, "night"),
    (sc_kms_disable, "night"), (sc_kms_material, "night"), (sc_policy_public, "night"),
    (sc_policy_cross, "day"), (sc_policy_changed, "day"), (sc_grant, "night"),
    (sc_ransomware, "night"), (sc_denied_burst, "night"), (sc_akv_delete_purge, "night"),
    (sc_akv_backup, "night"), (sc_akv_churn, "night"), (sc_akv_burst, "night"),
    (sc_akv_rare, "night"), (sc_akv_volume, "day"), (sc_vault_root, "night"),
    (sc_vault_audit, "night"), (sc_vault_export, "day"), (sc_vault_delete, "day"),
    (sc_vault_seal, "night"), (sc_vault_burst, "night"), (sc_vault_orphan, "night"),
    (sc_hsm_wrap, "night"), (sc_hsm_share, "day"), (sc_hsm_co, "night"), (sc_hsm_quorum, "night"),
    (sc_hsm_brute, "night"), (sc_hsm_reboot, "night"), (sc_new_principal, "late"),
    (sc_sod, "late"), (sc_rotation_overdue, "once"), (sc_dormant, "once"), (sc_expiry, "once"),
    (sc_unknown, "late"), (sc_anomaly, "late"),
]


def _plan(sim: Sim) -> list[tuple[Scenario, float, int]]:
    """When each scenario instance happens (drawn before the background so state is known)."""
    r = sim.rng
    per_type = max(1, min(5, int(sim.scale)))
    plan = []
    used_days: dict[str, set[int]] = defaultdict(set)
    for fn, when in SCENARIOS:
        for i in range(1 if when == "once" else per_type):
            lo = 15 if when == "late" else 8
            lo = min(lo, max(1, sim.days - 2))
            for _ in range(50):
                d = int(r.integers(lo, max(lo + 1, sim.days - 1)))
                if d not in used_days[fn.__name__]:
                    break
            used_days[fn.__name__].add(d)
            hour = int(r.integers(1, 5)) if when == "night" else int(r.integers(10, 17))
            plan.append((fn, sim.start + d * DAY + hour * HOUR + float(r.integers(0, 3000)), i))
    return plan


def generate(out_dir: str, seed: int = 1, days: int = 30, scale: float = 1.0) -> dict[str, Any]:
    """Write the logs and labels.json under `out_dir`; return a summary."""
    if days < 3:
        raise ValueError("days must be at least 3")
    if scale <= 0:
        raise ValueError("scale must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim = Sim(out, seed, days, scale)
    plan = _plan(sim)
    labels: list[Label] = []
    for fn, t, _ in plan:
        if fn is sc_hsm_reboot:
            sim.boots["hsm-1a2b3c4d"].append((t, 3))
    # Scenarios first: they register the unusable intervals the background must respect.
    for n, (fn, t, i) in enumerate(plan):
        lab = fn(sim, t, i)
        lab.scenario = f"S{n + 1:03d}-{lab.kind}"
        labels.append(lab)
    history(sim)
    background(sim)
    routine_operations(sim)
    files = sim.w.flush()
    doc = {
        "generator": "keytrail generate", "seed": seed, "days": days, "scale": scale,
        "start": ct_time(sim.start), "end": ct_time(sim.end),
        "benign_events": sim.w.benign, "attack_events": sim.w.attack,
        "events_by_source": dict(sorted(sim.w.per_source.items())),
        "scenarios": [lab.to_dict() for lab in labels],
    }
    atomic_write(out / "labels.json", orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return {"out_dir": str(out), "files": len(files), "events": sim.w.benign + sim.w.attack,
            "benign_events": sim.w.benign, "attack_events": sim.w.attack,
            "scenarios": len(labels), "events_by_source": doc["events_by_source"]}
