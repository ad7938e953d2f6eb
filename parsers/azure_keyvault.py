"""Azure Key Vault and Managed HSM audit logs -> KeyEvent (dataset `azure.keyvault`).

One parser, `AzureKeyVaultParser`, owns every container and record shape of the family; the
container is sniffed from the content, the shape is decided per record.

Containers (log.offset):
* storage-account / Event Hub delivery `{"records":[...]}` and a bare JSON array of records
  (the Managed HSM doc example, Log Analytics JSON exports): whole-file documents, log.offset
  is the RECORD INDEX inside the document. A single pretty-printed record is index 0.
* one JSON record per line (NDJSON, storage `PT1H.json` lines, Log Analytics NDJSON exports):
  log.offset is the BYTE OFFSET of the line. A line that is itself a `{"records":[...]}` batch
  (Event Hub capture written line by line) yields all its records at that line's offset.
* A whole-file document that is not valid JSON is read line by line when its first line is a
  complete JSON value on its own (line-delimited batches); otherwise it is ONE quarantined record
  (`truncated_record` when the JSON ends early, else `invalid_json`), at offset 0.

Record shapes:
* AuditEvent resource logs (Key Vault and Managed HSM; `time`, `operationName`, `properties`,
  `identity.claim` with short (`oid`, `upn`), long URI or nested-dict claim names, or `identity`
  as a JSON-encoded string; Managed HSM puts `httpStatusCode`/`requestUri`/`clientInfo` at top
  level).
* Log Analytics `AzureDiagnostics` rows (type-suffixed columns: `identity_claim_oid_g`,
  `id_s`, `httpStatusCode_d`, ...) and `AZKVAuditLogs` rows (`Identity` dynamic, `Id`,
  `HttpStatusCode`, `KeyProperties`, ...). `TenantId` of a Log Analytics row is the workspace,
  not the Entra tenant, and is ignored.
* Activity Log control-plane events on `Microsoft.KeyVault/*` (diagnostic-settings export:
  `operationName` string, `resultType`, `properties.statusCode`, `identity.claims`, `caller`;
  and the REST/Event Grid shape with `operationName.value`, `status.value`, `claims`,
  `httpRequest.clientIpAddress`, `eventDataId`), and Log Analytics `AzureActivity` rows
  (`OperationNameValue`, `ActivityStatusValue`, `Caller`, `Claims`, `Properties_d`).
  Records of other resource providers are skipped (`non_keyvault_event`), other diagnostic
  categories (`non_audit_category`) and AllMetrics records (`metric_record`) too.

Rules:
* Outcome: HTTP status first (2xx/3xx success, 4xx/5xx failure) because Key Vault writes
  resultType "Success" on 403s; else resultSignature (HTTP reason phrase or the Activity Log
  `Succeeded.OK` form); else resultType (Success/Succeeded/Accept(ed) -> success,
  Failure/Failed -> failure). Activity Log `Start` records are skipped (`activity_start`): the
  terminal record of the same operation carries the outcome.
* Key identity: `https://<vault-host>/keys/<name>` with host AND name lower-cased (Key Vault
  object names are case-insensitive; `keytrail.key.name` keeps the logged case), version in
  `keytrail.key.version`; `/deletedkeys/` names the same key; secrets and certificates likewise
  with `/secrets/`, `/certificates/`. Activity Log names the object in the ARM resourceId; its
  uid ASSUMES the public-cloud host (`<vault>.vault.azure.net`, `<hsm>.managedhsm.azure.net`).
* Principal: `user.id` = Entra object id (oid), else appid, else the Activity Log caller;
  `user.name` = upn, unique_name, name, managed-identity name, else appid; type from `idtyp`,
  `xms_mirid` (managed_identity) or the presence of a upn.
* `event.id` = stable_id(dataset, eventDataId) for Activity Log REST records, else
  stable_id(dataset, orjson.dumps(record)): Key Vault logs carry no unique record id
  (correlationId is client supplied and repeats), and re-serialising makes the same record get
  the same id whether it arrives in a `{"records":[...]}` document or on its own line.

Operation decisions: unknown operationNames become `admin_other` events (never quarantined);
`*EventGridNotification` operations are the service publishing a notification, so
`admin_other` (the change itself is its own VaultPut/KeyUpdate record); Managed HSM
`SecurityDomainDownload` is a `backup` (a wrapped copy of the HSM's root material leaves it),
`SecurityDomainUpload` a `restore`; Activity Log object writes (`vaults/keys/write`) are
`create`, vault writes and access-policy writes `update_policy`.

Assumed where Microsoft documents little: the AzureDiagnostics flattening of key attributes
(`keyProperties_attributes_enabled_b`, `keyProperties_type_s`, ...), the `KeyUpdate` enabled
flag (enabled=false -> disable; enabled=true stays update_policy because the log shows the
resulting attributes, not what changed), and Managed HSM operation names beyond the doc example.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import IO, Any, Final, NamedTuple

import orjson

from parsers import schema
from parsers.base import (
    LogParser,
    ParseOutcome,
    Skipped,
    json_error,
    quarantine,
    register,
    stable_id,
)
from parsers.framing import (
    CHUNK,
    OVERLONG,
    Batch,
    Framed,
    LineCounter,
    Tally,
    container_open,
    iter_container,
    iter_lines,
    load_element,
    read_upto,
    rejoin,
    tally_of,
    too_long,
)
from parsers.native import NATIVE
from parsers.netaddr import clean_ip
from parsers.schema import Outcome, new_event
from parsers.scrub import scrub_uri
from parsers.timeutil import BadTimestamp, format_ms, normalize_iso

DATASET: Final[str] = "azure.keyvault"
PROVIDER: Final[str] = "Microsoft.KeyVault"
PROVIDER_KV: Final[str] = "azure_keyvault"
PROVIDER_HSM: Final[str] = "azure_managed_hsm"

# This family's vendor leftovers (defined with every other field in schema.EXTRA_FIELDS).
EXTRA_FIELDS: Final[dict[str, tuple[str, str]]] = {
    k: v for k, v in schema.EXTRA_FIELDS.items() if k.startswith("azure.keyvault.")
}

_BOM: Final[bytes] = b"\xef\xbb\xbf"
# Compiled fast path for NDJSON lines (parsers/native/src/keyvault.rs), or None:
# (buf, end, path, base offset, max line) -> (KeyEvents and (offset, line, overlong)
# tuples for the lines Python must parse, number of such tuples).
_NativeLines = Callable[[bytes, int, str, int, int], tuple[list[Any], int]]
_NATIVE_LINES: _NativeLines | None = getattr(NATIVE, "keyvault_lines", None)
# (document, path) -> (a KeyEvent or None per record, number of Nones), or None.
_NativeDoc = Callable[[bytes, str], tuple[list[Any], int] | None]
_NATIVE_DOC: _NativeDoc | None = getattr(NATIVE, "keyvault_document", None)
_FAST_CHUNK: Final[int] = 1 << 16  # bounded batches: events are consumed while hot
_PEEK: Final[int] = 4096
_OPENER: Final = container_open((b"records",))
_WS: Final[bytes] = b" \t\r\n"


class ObjectRef(NamedTuple):
    """What a Key Vault object URI or ARM resource id names."""

    host: str | None
    vault: str | None
    provider: str
    kind: str | None  # key | secret | certificate, or None for vault-level URIs
    name: str | None
    version: str | None
    uid: str | None


# ---------------------------------------------------------------- operation vocabulary

# AuditEvent operationName -> (keytrail operation, object kind hint).
_K, _S, _C = "key", "secret", "certificate"
AUDIT_OPERATIONS: Final[dict[str, tuple[str, str | None]]] = {
    "Authentication": ("login", None),
    "VaultGet": ("describe", None),
    "VaultList": ("list", None),
    "VaultPut": ("update_policy", None),
    "VaultPatch": ("update_policy", None),
    "VaultDelete": ("schedule_deletion", None),
    "VaultRecover": ("cancel_deletion", None),
    "VaultPurge": ("purge", None),
    "VaultGetDeleted": ("describe", None),
    "VaultListDeleted": ("list", None),
    "KeyCreate": ("create", _K),
    "KeyImport": ("import", _K),
    "KeyUpdate": ("update_policy", _K),
    "KeyRotate": ("rotate", _K),
    "KeyRotateIfDue": ("rotate", _K),
    "KeyRotationPolicySet": ("update_policy", _K),
    "KeyRotationPolicyUpdate": ("update_policy", _K),
    "KeyRotationPolicyGet": ("describe", _K),
    "KeyDelete": ("schedule_deletion", _K),
    "KeyPurge": ("purge", _K),
    "KeyRecover": ("cancel_deletion", _K),
    "KeyBackup": ("backup", _K),
    "KeyRestore": ("restore", _K),
    "SelectiveKeyRestore": ("restore", _K),
    "KeyEncrypt": ("encrypt", _K),
    "KeyDecrypt": ("decrypt", _K),
    "KeyWrap": ("wrap", _K),
    "KeyUnwrap": ("unwrap", _K),
    "KeySign": ("sign", _K),
    "KeyVerify": ("verify", _K),
    "KeyGet": ("describe", _K),
    "KeyGetDeleted": ("describe", _K),
    "KeyGetAttestation": ("describe", _K),
    "KeyList": ("list", _K),
    "KeyListVersions": ("list", _K),
    "KeyListDeleted": ("list", _K),
    "KeyRelease": ("export", _K),
    "SecretGet": ("export", _S),  # the secret value leaves the vault
    "SecretSet": ("create", _S),  # every set is a new version
    "SecretUpdate": ("update_policy", _S),
    "SecretDelete": ("schedule_deletion", _S),
    "SecretPurge": ("purge", _S),
    "SecretBackup": ("backup", _S),
    "SecretRestore": ("restore", _S),
    "SecretRecover": ("cancel_deletion", _S),
    "SecretGetDeleted": ("describe", _S),
    "SecretList": ("list", _S),
    "SecretListVersions": ("list", _S),
    "SecretListDeleted": ("list", _S),
    "CertificateCreate": ("create", _C),
    "CertificateImport": ("import", _C),
    "CertificateUpdate": ("update_policy", _C),
    "CertificateGet": ("describe", _C),
    "CertificateGetDeleted": ("describe", _C),
    "CertificateList": ("list", _C),
    "CertificateListVersions": ("list", _C),
    "CertificateListDeleted": ("list", _C),
    "CertificateDelete": ("schedule_deletion", _C),
    "CertificatePurge": ("purge", _C),
    "CertificateRecover": ("cancel_deletion", _C),
    "CertificateBackup": ("backup", _C),
    "CertificateRestore": ("restore", _C),
    "CertificatePolicyGet": ("describe", _C),
    "CertificatePolicySet": ("update_policy", _C),
    "CertificatePolicyUpdate": ("update_policy", _C),
    "CertificatePendingGet": ("describe", _C),
    "CertificatePendingMerge": ("import", _C),
    "CertificatePendingUpdate": ("admin_other", _C),
    "CertificatePendingDelete": ("admin_other", _C),
    # Managed HSM administration.
    "BackupCreate": ("backup", None),
    "BackupStatus": ("describe", None),
    "RestoreCreate": ("restore", None),
    "RestoreStatus": ("describe", None),
    "SecurityDomainDownload": ("backup", None),  # wrapped copy of the HSM's root material
    "SecurityDomainUpload": ("restore", None),
    "RoleAssignmentCreate": ("update_policy", None),
    "RoleAssignmentDelete": ("update_policy", None),
    "RoleAssignmentGet": ("describe", None),
    "RoleAssignmentList": ("list", None),
    "RoleDefinitionCreate": ("update_policy", None),
    "RoleDefinitionDelete": ("update_policy", None),
    "RoleDefinitionGet": ("describe", None),
    "RoleDefinitionList": ("list", None),
}
_AUDIT_OPERATIONS_LOWER: Final[dict[str, tuple[str, str | None]]] = {
    k.lower(): v for k, v in AUDIT_OPERATIONS.items()
}

# Activity Log: last verb of a Microsoft.KeyVault action -> operation. Object writes create
# (ARM keys/secrets "create if not exist"); vault-level writes change configuration.
_ARM_VERBS: Final[dict[str, str]] = {
    "read": "describe",
    "readmetadata": "describe",
    "delete": "schedule_deletion",
    "purge": "purge",
    "recover": "cancel_deletion",
    "backup": "backup",
    "restore": "restore",
    "rotate": "rotate",
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "wrap": "wrap",
    "wrapkey": "wrap",
    "unwrap": "unwrap",
    "unwrapkey": "unwrap",
    "sign": "sign",
    "verify": "verify",
    "release": "export",
    "getsecret": "export",
    "import": "import",
    "create": "create",
    "setsecret": "create",
    "update": "update_policy",
    "deploy": "admin_other",
}
_ARM_KINDS: Final[dict[str, str]] = {"keys": _K, "secrets": _S, "certificates": _C}
_ARM_VAULT_TYPES: Final[frozenset[str]] = frozenset(
    {"vaults", "managedhsms", "deletedvaults", "deletedmanagedhsms"}
)

_URI_COLLECTIONS: Final[dict[str, tuple[str, str]]] = {
    "keys": (_K, "keys"),
    "deletedkeys": (_K, "keys"),
    "secrets": (_S, "secrets"),
    "deletedsecrets": (_S, "secrets"),
    "certificates": (_C, "certificates"),
    "deletedcertificates": (_C, "certificates"),
}
# Path segments that follow a collection or an object name but are verbs, not names/versions.
_NOT_A_NAME: Final[frozenset[str]] = frozenset({"restore", "import", "issuers", "contacts"})
_NOT_A_VERSION: Final[frozenset[str]] = frozenset(
    {
        "versions",
        "create",
        "import",
        "backup",
        "restore",
        "rotate",
        "rotationpolicy",
        "release",
        "encrypt",
        "decrypt",
        "wrapkey",
        "unwrapkey",
        "sign",
        "verify",
        "recover",
        "attestation",
        "pending",
        "policy",
        "update",
    }
)

_HTTP_REASONS: Final[dict[str, int]] = {
    "ok": 200,
    "created": 201,
    "accepted": 202,
    "nocontent": 204,
    "partialcontent": 206,
    "notmodified": 304,
    "badrequest": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "notfound": 404,
    "methodnotallowed": 405,
    "requesttimeout": 408,
    "conflict": 409,
    "gone": 410,
    "preconditionfailed": 412,
    "toomanyrequests": 429,
    "internalservererror": 500,
    "notimplemented": 501,
    "badgateway": 502,
    "serviceunavailable": 503,
    "gatewaytimeout": 504,
}
_SUCCESS_WORDS: Final[frozenset[str]] = frozenset({"success", "succeeded", "accept", "accepted"})
_FAILURE_WORDS: Final[frozenset[str]] = frozenset({"failure", "failed"})
_START_WORDS: Final[frozenset[str]] = frozenset({"start", "started"})

# Canonical claim names, from short names, the last segment of URI claim names and the
# AzureDiagnostics flattening (`http_schemas_..._claims_<name>`).
_CLAIM_NAMES: Final[dict[str, str]] = {
    "oid": "oid",
    "objectidentifier": "oid",
    "upn": "upn",
    "unique_name": "unique_name",
    "name": "name",
    "appid": "appid",
    "azp": "appid",
    "tid": "tid",
    "tenantid": "tid",
    "idtyp": "idtyp",
    "xms_mirid": "xms_mirid",
}


# ---------------------------------------------------------------- small pure helpers


@lru_cache(maxsize=4096)
def _claim_key(name: str) -> str | None:
    n = name.lower()
    if "/" in n:
        n = n.rsplit("/", 1)[1]
    elif n.startswith("http_schemas_"):
        n = n.rsplit("_claims_", 1)[-1]
    return _CLAIM_NAMES.get(n)


def _collect_claims(node: Mapping[str, Any], out: dict[str, str], depth: int = 0) -> None:
    """Flatten a claim dict (short, URI or nested names) into canonical name -> value."""
    for k, v in node.items():
        if isinstance(v, str):
            if v:
                ck = _claim_key(k)
                if ck is not None and ck not in out:
                    out[ck] = v
        elif isinstance(v, dict) and depth < 4:
            _collect_claims(v, out, depth + 1)


def _load_dict(value: Any) -> dict[str, Any] | None:
    """A dict field that some shapes serialise as a JSON string (identity, dynamic columns)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value[:1] == "{":
        try:
            loaded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if isinstance(loaded, dict):
            return loaded
    return None


def _identity_claims(identity: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    ident = _load_dict(identity)
    if ident is None:
        return out
    claim = ident.get("claim")
    if not isinstance(claim, dict):
        claim = ident.get("claims")
    if isinstance(claim, dict):
        if isinstance(claim.get("oid"), str):
            # Hot path: the short-name form Key Vault writes for data-plane calls.
            for name in _SHORT_CLAIMS:
                v = claim.get(name)
                if isinstance(v, str) and v:
                    out[name] = v
            for long_name, name in _LONG_CLAIMS:
                if name not in out:
                    v = claim.get(long_name)
                    if isinstance(v, str) and v:
                        out[name] = v
        else:
            _collect_claims(claim, out)
    return out


# URI claim names that appear next to short ones (e.g. a short oid with a long tenantid).
_LONG_CLAIMS: Final[tuple[tuple[str, str], ...]] = (
    ("http://schemas.microsoft.com/identity/claims/tenantid", "tid"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn", "upn"),
    ("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name", "name"),
)
_SHORT_CLAIMS: Final[tuple[str, ...]] = (
    "oid",
    "upn",
    "unique_name",
    "name",
    "appid",
    "tid",
    "idtyp",
    "xms_mirid",
)


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    return None


def _as_int(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is str:
        if value.isascii() and value.isdigit() and len(value) < 16:
            return int(value)
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return int(f) if math.isfinite(f) and abs(f) < 1e15 else None
    if kind is float:
        return int(value) if math.isfinite(value) and abs(value) < 1e15 else None
    return None  # bool, None, containers


def _status_code(value: Any) -> int | None:
    """HTTP status from a number, a numeric string or a reason phrase ('Forbidden')."""
    if type(value) is int:
        return value if 100 <= value < 600 else None
    code = _as_int(value)
    if code is None and isinstance(value, str):
        code = _HTTP_REASONS.get(value.replace(" ", "").lower())
    if code is not None and 100 <= code < 600:
        return code
    return None


def _outcome(status: int | None, signature: str | None, result_type: str | None) -> Outcome:
    # Key Vault reports resultType=Success with HTTP 403; the status code wins.
    if status is not None:
        return "success" if status < 400 else "failure"
    if signature:
        s = signature.strip().lower()
        head = s.split(".", 1)[0]
        if head in _SUCCESS_WORDS:
            return "success"
        if head in _FAILURE_WORDS:
            return "failure"
        code = _status_code(s)
        if code is not None:
            return "success" if code < 400 else "failure"
    if result_type:
        r = result_type.strip().lower()
        if r in _SUCCESS_WORDS:
            return "success"
        if r in _FAILURE_WORDS:
            return "failure"
    return "unknown"


_PORTAL_FORMATS: Final[tuple[str, ...]] = (
    "%m/%d/%Y, %I:%M:%S.%f %p",
    "%m/%d/%Y, %I:%M:%S %p",
    "%m/%d/%Y %I:%M:%S.%f %p",
    "%m/%d/%Y %I:%M:%S %p",
)


def _timestamp(value: Any) -> str | None:
    """ISO 8601 (Azure writes 7 fractional digits), or the Azure portal export form."""
    if not isinstance(value, str):
        return None
    try:
        return normalize_iso(value)
    except BadTimestamp:
        pass
    if "/" in value and len(value) < 40:
        v = value.strip()
        for fmt in _PORTAL_FORMATS:
            try:
                return format_ms(datetime.strptime(v, fmt).replace(tzinfo=UTC))
            except ValueError:
                continue
    return None


def _epoch_iso(value: Any) -> str | None:
    secs = _as_int(value)
    if secs is None or not 0 < secs < 32503680000:
        return None
    return format_ms(datetime.fromtimestamp(secs, tz=UTC))


@lru_cache(maxsize=1024)
def _guid(value: str) -> str:
    """Lower-case a well-formed GUID; keep masked or placeholder ids verbatim."""
    low = value.lower()
    if len(low) == 36 and low.count("-") == 4 and all(c in "0123456789abcdef-" for c in low):
        return low
    return value


@lru_cache(maxsize=65536)
def parse_object_uri(uri: str) -> ObjectRef | None:
    """Key Vault / Managed HSM object URI (properties.id, requestUri) -> ObjectRef."""
    low = uri[:8].lower()
    if low.startswith("https://"):
        rest = uri[8:]
    elif low.startswith("http://"):
        rest = uri[7:]
    else:
        return None
    for sep in "?#":
        cut = rest.find(sep)
        if cut >= 0:
            rest = rest[:cut]
    host, _, path = rest.partition("/")
    # `user:password@` never becomes part of a key uid (parsers/scrub.py scrubs URIs)
    host = host.rpartition("@")[2].lower()
    if not host:
        return None
    if ".vault." not in host and ".managedhsm." not in host:
        # management.azure.com / vaultcore control-plane URL: an ARM path.
        return parse_resource_id(path) if "/providers/" in path.lower() else None
    provider = PROVIDER_HSM if ".managedhsm." in host else PROVIDER_KV
    vault = host.split(".", 1)[0]
    segs = [s for s in path.split("/") if s]
    if not segs:
        return ObjectRef(host, vault, provider, None, None, None, None)
    coll = _URI_COLLECTIONS.get(segs[0].lower())
    if coll is None:
        return ObjectRef(host, vault, provider, None, None, None, None)
    kind, canonical = coll
    if len(segs) < 2 or segs[1].lower() in _NOT_A_NAME:
        if kind == _C and len(segs) >= 2 and segs[1].lower() in ("issuers", "contacts"):
            kind_out: str | None = None  # certificate issuers / contacts are vault settings
        else:
            kind_out = kind
        return ObjectRef(host, vault, provider, kind_out, None, None, None)
    name = segs[1]
    version = None
    if len(segs) > 2:
        v = segs[2]
        if v.lower() not in _NOT_A_VERSION and v.isalnum():
            version = v
    uid = f"https://{host}/{canonical}/{name.lower()}"
    return ObjectRef(host, vault, provider, kind, name, version, uid)


class ResourceRef(NamedTuple):
    """What an ARM resource id names."""

    subscription: str | None
    location: str | None
    object: ObjectRef | None
    access_policy_op: str | None


@lru_cache(maxsize=65536)
def parse_resource_id(resource_id: str) -> ObjectRef | None:
    """ARM resource id of a vault / HSM or an object in it -> ObjectRef (public-cloud hosts)."""
    return _resource(resource_id).object


@lru_cache(maxsize=65536)
def _resource(resource_id: str) -> ResourceRef:
    segs = [s for s in resource_id.split("/") if s]
    low = [s.lower() for s in segs]
    n = len(segs)
    sub = None
    location = None
    vault = None
    vault_idx = -1
    hsm = False
    for i, s in enumerate(low):
        if i + 1 >= n:
            break
        if s == "subscriptions" and sub is None:
            sub = _guid(segs[i + 1])
        elif s == "locations" and location is None:
            location = low[i + 1]
        elif s in _ARM_VAULT_TYPES and vault is None:
            vault = low[i + 1]
            vault_idx = i + 1
            hsm = "managedhsms" in s
    if vault is None:
        return ResourceRef(sub, location, None, None)
    host = f"{vault}.managedhsm.azure.net" if hsm else f"{vault}.vault.azure.net"
    provider = PROVIDER_HSM if hsm else PROVIDER_KV
    kind = None
    name = None
    version = None
    uid = None
    ap_op = None
    if vault_idx + 1 < n:
        child = low[vault_idx + 1]
        kind = _ARM_KINDS.get(child)
        if kind is not None and vault_idx + 2 < n:
            name = segs[vault_idx + 2]
            uid = f"https://{host}/{child}/{name.lower()}"
            if vault_idx + 4 < n and low[vault_idx + 3] == "versions":
                version = segs[vault_idx + 4]
        elif child == "accesspolicies" and vault_idx + 2 < n:
            ap_op = low[vault_idx + 2]
    obj = ObjectRef(host, vault, provider, kind, name, version, uid)
    return ResourceRef(sub, location, obj, ap_op)


def _key_attributes(
    props: Mapping[str, Any] | None,
) -> tuple[str | None, str | None, bool | None, str | None]:
    """(spec, usage, enabled, expires_at) from keyProperties / secretProperties / ..."""
    if props is None:
        return None, None, None, None
    spec = _str(props.get("type")) or _str(props.get("kty"))
    if spec is not None:
        size = _as_int(props.get("size") or props.get("keySize"))
        curve = _str(props.get("curve") or props.get("crv"))
        if size:
            spec = f"{spec} {size}"
        elif curve:
            spec = f"{spec} {curve}"
    ops = props.get("operations")
    usage = None
    if isinstance(ops, list):
        names = [o for o in ops if isinstance(o, str)]
        usage = ",".join(names) or None
    enabled = None
    exp = None
    attrs = props.get("attributes")
    if isinstance(attrs, dict):
        en = attrs.get("enabled")
        if isinstance(en, bool):
            enabled = en
        exp = _epoch_iso(attrs.get("exp"))
    return spec, usage, enabled, exp


def _diagnostics_key_props(rec: Mapping[str, Any], kind: str | None) -> dict[str, Any] | None:
    """Rebuild keyProperties from AzureDiagnostics flattened columns (assumed names)."""
    prefix = _DIAG_PREFIX.get(kind or "")
    if prefix is None:
        return None
    out: dict[str, Any] = {}
    for col, target in (("type_s", "type"), ("size_d", "size"), ("curve_s", "curve")):
        v = rec.get(prefix + col)
        if v is not None:
            out[target] = v
    attrs: dict[str, Any] = {}
    enabled = rec.get(prefix + "attributes_enabled_b")
    if isinstance(enabled, str):
        enabled = {"true": True, "false": False}.get(enabled.lower())
    if isinstance(enabled, bool):
        attrs["enabled"] = enabled
    exp = rec.get(prefix + "attributes_exp_d")
    if exp is not None:
        attrs["exp"] = exp
    if attrs:
        out["attributes"] = attrs
    return out or None


_DIAG_PREFIX: Final[dict[str, str]] = {
    _K: "keyProperties_",
    _S: "secretProperties_",
    _C: "certificateProperties_",
}


_AZKV_PROPERTY_COLUMNS: Final[dict[str, str]] = {
    _K: "KeyProperties",
    _S: "SecretProperties",
    _C: "CertificateProperties",
}

# AzureDiagnostics flattens identity.claim.<name> into identity_claim_<name>_<type>; the
# usual columns are read directly, anything else by scanning the row.
_DIAG_CLAIM_COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("identity_claim_oid_g", "oid"),
    ("identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g", "oid"),
    ("identity_claim_upn_s", "upn"),
    ("identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s", "upn"),
    ("identity_claim_unique_name_s", "unique_name"),
    ("identity_claim_appid_g", "appid"),
    ("identity_claim_tid_g", "tid"),
    ("identity_claim_http_schemas_microsoft_com_identity_claims_tenantid_g", "tid"),
    ("identity_claim_idtyp_s", "idtyp"),
    ("identity_claim_xms_mirid_s", "xms_mirid"),
)


def _diagnostics_claims(rec: Mapping[str, Any]) -> dict[str, str]:
    claims: dict[str, str] = {}
    for col, canonical in _DIAG_CLAIM_COLUMNS:
        value = rec.get(col)
        if isinstance(value, str) and value and canonical not in claims:
            claims[canonical] = value
    if "oid" in claims:
        return claims
    for col, value in rec.items():
        if col.startswith("identity_claim_") and isinstance(value, str) and value:
            name = col[15:]
            if len(name) > 2 and name[-2] == "_":
                name = name[:-2]
            ck = _claim_key(name)
            if ck is not None and ck not in claims:
                claims[ck] = value
    return claims


def _vault_diagnostics(op: str, resource_id: object) -> bool:
    """A diagnostic setting of a Key Vault / Managed HSM written or deleted: the switch for the
    vault's AuditEvent logs, so it belongs in the vault's record (Microsoft.Insights
    operation on a `.../providers/Microsoft.KeyVault/...` resource scope)."""
    o = op.lower()
    return o.startswith("microsoft.insights/diagnosticsettings/") and isinstance(
        resource_id, str) and "/providers/microsoft.keyvault/" in resource_id.lower()


def _audit_logs_enabled(props: Mapping[str, Any]) -> bool | None:
    """From a diagnostic-setting request body: True when it exports AuditEvent (or the
    audit / allLogs category groups), False when it lists logs without them, None when the
    record carries no body."""
    body = _load_dict(props.get("requestbody") or props.get("requestBody"))
    inner = body.get("properties") if isinstance(body, dict) else None
    logs = inner.get("logs") if isinstance(inner, dict) else None
    if not isinstance(logs, list):
        return None
    for entry in logs[:64]:
        if isinstance(entry, dict) and entry.get("enabled") is True and (
                str(entry.get("category") or "").lower() == "auditevent"
                or str(entry.get("categoryGroup") or "").lower() in ("audit", "alllogs")):
            return True
    return False


def _access_policy_details(props: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Object ids and '<kind>:<perm>' permissions of an access-policy request body."""
    body = _load_dict(props.get("requestbody") or props.get("requestBody"))
    if body is None:
        return [], []
    inner = body.get("properties")
    policies = inner.get("accessPolicies") if isinstance(inner, dict) else None
    if not isinstance(policies, list):
        return [], []
    oids: list[str] = []
    perms: list[str] = []
    for p in policies[:64]:
        if not isinstance(p, dict):
            continue
        oid = _str(p.get("objectId"))
        if oid and oid not in oids:
            oids.append(oid)
        pp = p.get("permissions")
        if isinstance(pp, dict):
            for kind, values in pp.items():
                if isinstance(values, list):
                    for v in values[:64]:
                        if isinstance(v, str):
                            item = f"{kind}:{v}".lower()
                            if item not in perms:
                                perms.append(item)
    return oids, perms


def _principal(
    claims: Mapping[str, str], caller: str | None
) -> tuple[str | None, str | None, str | None]:
    """(user.id, user.name, principal type) from canonical claims and an Activity Log caller."""
    oid = claims.get("oid")
    upn = claims.get("upn")
    appid = claims.get("appid")
    mirid = claims.get("xms_mirid")
    idtyp = (claims.get("idtyp") or "").lower()
    display = upn or claims.get("unique_name") or claims.get("name")
    if mirid:
        ptype: str | None = "managed_identity"
        display = display or mirid.rstrip("/").rsplit("/", 1)[-1]
    elif idtyp == "user":
        ptype = "user"
    elif idtyp == "app":
        ptype = "service_principal"
    elif upn or (display and "@" in display):
        ptype = "user"
    elif appid or oid:
        ptype = "service_principal"
    else:
        ptype = None
    user_id = oid or appid
    if caller:
        if user_id is None:
            user_id = caller
        if display is None and "@" in caller:
            display = caller
        if ptype is None:
            ptype = "user" if "@" in caller else "service_principal"
    return user_id, display or appid, ptype


# ---------------------------------------------------------------- the parser


@register
class AzureKeyVaultParser(LogParser):
    """Key Vault / Managed HSM AuditEvent, Log Analytics rows and Key Vault Activity Log."""

    id = "azure_keyvault"
    dataset = DATASET
    description = (
        "Azure Key Vault / Managed HSM audit logs: storage and Event Hub {records:[...]}, "
        "NDJSON, JSON arrays, AzureDiagnostics and AZKVAuditLogs rows, Activity Log."
    )

    # ------------------------------------------------------------ detection

    def sniff(self, head: bytes) -> int:
        try:
            return self._sniff(head)
        except Exception:  # sniffing must never raise
            return 0

    @staticmethod
    def _sniff(head: bytes) -> int:
        text = head.lstrip(_WS)
        if text.startswith(_BOM):
            text = text[3:].lstrip(_WS)
        if not text or text[:1] not in (b"{", b"["):
            return 0
        low = text.lower()
        has_op = b'"operationname"' in low or b'"operationnamevalue"' in low
        if not has_op:
            return 0
        kv = (
            b"microsoft.keyvault" in low
            or b".vault.azure.net" in low
            or b".managedhsm.azure.net" in low
            or b"azkvauditlogs" in low
            or b".vault.azure.cn" in low
            or b".vault.usgovcloudapi.net" in low
        )
        if kv:
            return 90
        # Any Azure resource-log / Activity Log / Log Analytics record: a subscription-wide
        # export may hold thousands of other services' records before the first Key Vault
        # one (far beyond the sniffed head). Recognised by record shape; scope is decided
        # per record (other services are skipped as non_keyvault_event).
        if b'"resourceid"' in low and (
            b'"time"' in low or b'"timegenerated"' in low or b'"eventtimestamp"' in low
        ):
            return 50
        if b'"auditevent"' in low:
            return 40
        return 0

    # ------------------------------------------------------------ containers

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        tally = tally_of(stream)
        head = read_upto(stream, _PEEK)
        if not head:
            return
        body = head.lstrip(_WS)
        if body.startswith(_BOM):
            body = body[3:].lstrip(_WS)
        first = body[:1]
        is_document = first == b"[" or (
            first == b"{" and body[1:].lstrip(_WS).startswith(b'"records"')
        )
        if not is_document:
            yield from self._parse_lines(rejoin(head, stream), path, tally)
            return
        # Event Hub capture / forwarding: one {"records":[...]} batch per line (NDJSON).
        # Otherwise one document, streamed element by element (hourly blobs reach GBs).
        max_line = self.options.max_line_bytes
        while b"\n" not in head.lstrip(_WS) and len(head) <= max_line:
            more = read_upto(stream, CHUNK)
            if not more:
                break
            head += more
        text = head.lstrip(_WS)
        nl = text.find(b"\n")
        if 0 < nl <= max_line and text[nl:].strip():
            line = text[:nl]
            try:
                orjson.loads(line[3:] if line.startswith(_BOM) else line)
                lines = True
            except orjson.JSONDecodeError:
                lines = False
            if lines:
                yield from self._parse_lines(rejoin(head, stream), path, tally)
                return
        yield from self._stream(rejoin(head, stream), path, tally)

    def _stream(self, stream: IO[bytes], path: str, tally: Tally) -> Iterator[ParseOutcome]:
        """`{"records":[...]}` or a JSON array, element by element (log.offset = index)."""
        native = _NATIVE_DOC if not self.options.include_original else None
        batches = frozenset({b"records"}) if native is not None else frozenset()
        for item in iter_container(stream, self.options.max_line_bytes, _OPENER, tally,
                                   batches):
            if type(item) is Batch:
                assert native is not None
                got = native(b'{"records":[' + item.raw + b"]}", path)
                if got is None:
                    continue  # not strictly valid: framed again one element at a time
                done, unsure = got
                try:
                    recs = orjson.loads(b"[" + item.raw + b"]") if unsure else None
                except orjson.JSONDecodeError:
                    continue
                item.count = len(done)
                tally.records += len(done)
                base = item.idx
                for i, ev in enumerate(done):
                    if ev is not None:
                        ev.log_offset += base
                        yield ev
                    else:
                        assert recs is not None
                        yield self._element_value(recs[i], path, base + i)
                continue
            assert isinstance(item, Framed)
            yield self._element(item, path)

    def _element(self, item: Framed, path: str) -> ParseOutcome:
        rec, bad = load_element(item, path, DATASET, self.options.max_line_bytes)
        return bad if bad is not None else self._element_value(rec, path, item.idx)

    def _element_value(self, rec: Any, path: str, index: int) -> ParseOutcome:
        if isinstance(rec, dict):
            return self._record(rec, path, index)
        return quarantine("not_an_object", path, index, orjson.dumps(rec), DATASET,
                          f"record {index} is a JSON {type(rec).__name__}")

    def _parse_lines(self, stream: IO[bytes], path: str, tally: Tally) -> Iterator[ParseOutcome]:
        # (Below 512 bytes the over-long excerpt depends on read sizes: Python frames.)
        if (_NATIVE_LINES is not None and not self.options.include_original
                and self.options.max_line_bytes >= 512):
            # The compiled code frames the lines: count them as the bytes pass.
            counter = LineCounter(tally)
            counted = rejoin(b"", _Counted(stream, counter))
            return chain.from_iterable(
                self._native_batches(counted, path, _NATIVE_LINES, tally))
        return self._parse_framed(iter_lines(stream, self.options.max_line_bytes, tally),
                                  path, tally)

    def _native_batches(
        self, stream: IO[bytes], path: str, native: _NativeLines, tally: Tally
    ) -> Iterator[Iterable[ParseOutcome]]:
        """The compiled fast path frames and parses chunks of whole lines (exactly as
        iter_lines + _parse_framed would) and hands back the lines it is unsure of."""
        max_line = self.options.max_line_bytes
        carry = b""
        base = 0  # file offset of carry[0]; always the start of a line
        while True:
            chunk = stream.read(_FAST_CHUNK)
            if not chunk:
                break
            buf = carry + chunk if carry else chunk
            end = buf.rfind(b"\n") + 1
            if end:
                outcomes, fallbacks = native(buf, end, path, base, max_line)
                yield self._with_fallbacks(outcomes, path, tally) if fallbacks else outcomes
                carry = buf[end:]
                base += end
            else:
                carry = buf
            if len(carry) > max_line:  # an over-long line: iter_lines takes the rest
                rest = iter_lines(rejoin(carry, stream), max_line, Tally())  # counted already
                yield self._parse_framed(_shifted(rest, base), path, tally)
                return
        if carry:
            yield self._parse_framed(
                _shifted(iter_lines(io.BytesIO(carry), max_line, Tally()), base), path, tally)

    def _with_fallbacks(
        self, outcomes: list[Any], path: str, tally: Tally
    ) -> Iterator[ParseOutcome]:
        for item in outcomes:
            if type(item) is tuple:
                offset, line, overlong = item
                yield from self._parse_framed(
                    ((offset, OVERLONG + line if overlong else line),), path, tally
                )
            else:
                yield item

    def _parse_framed(
        self, lines: Iterable[tuple[int, bytes]], path: str, tally: Tally
    ) -> Iterator[ParseOutcome]:
        """One outcome per line (counted by the framing), except batch lines: one per
        element of the line's `records` list (counted here instead of the line)."""
        for offset, line in lines:
            if line.startswith(OVERLONG):
                yield too_long(path, offset, line, DATASET, self.options.max_line_bytes)
                continue
            body = line[3:] if offset == 0 and line.startswith(_BOM) else line
            try:
                rec = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                reason, detail = json_error(str(exc))
                yield quarantine(reason, path, offset, line, DATASET, detail)
                continue
            if not isinstance(rec, dict):
                yield quarantine(
                    "not_an_object",
                    path,
                    offset,
                    line,
                    DATASET,
                    f"line is a JSON {type(rec).__name__}",
                )
                continue
            batch = rec.get("records")
            if isinstance(batch, list) and "operationName" not in rec:
                tally.records += len(batch) - 1
                for item in batch:
                    if isinstance(item, dict):
                        yield self._record(item, path, offset)
                    else:
                        yield quarantine(
                            "not_an_object",
                            path,
                            offset,
                            orjson.dumps(item),
                            DATASET,
                            "batch element is not an object",
                        )
                continue
            yield self._record(rec, path, offset)

    # ------------------------------------------------------------ record shapes

    def _record(self, rec: dict[str, Any], path: str, offset: int) -> ParseOutcome:
        try:
            return self._dispatch(rec, path, offset)
        except Exception as exc:  # a record must never abort the file
            return quarantine(
                "unknown_shape", path, offset, _dump(rec), DATASET, f"{type(exc).__name__}: {exc}"
            )

    def _dispatch(self, rec: dict[str, Any], path: str, offset: int) -> ParseOutcome:
        op = rec.get("operationName")
        if op is not None:
            if isinstance(op, dict):
                op = op.get("value")
            if not isinstance(op, str) or not op:
                return quarantine(
                    "missing_field",
                    path,
                    offset,
                    _dump(rec),
                    DATASET,
                    "operationName is empty or not a string",
                )
            if "/" in op:
                return self._activity(rec, op, path, offset)
            return self._audit(rec, op, path, offset)
        if "OperationNameValue" in rec:
            return self._azure_activity_row(rec, path, offset)
        if "OperationName" in rec:
            return self._log_analytics(rec, path, offset)
        if "metricName" in rec:
            return Skipped("metric_record", path, offset)
        return quarantine(
            "unknown_shape", path, offset, _dump(rec), DATASET, "no operationName / OperationName"
        )

    def _audit(self, rec: dict[str, Any], op: str, path: str, offset: int) -> ParseOutcome:
        """AuditEvent resource-log record (Key Vault or Managed HSM)."""
        category = rec.get("category")
        if isinstance(category, str) and category and category != "AuditEvent":
            return Skipped("non_audit_category", path, offset)
        props = rec.get("properties")
        if not isinstance(props, dict):
            props = {}
        # Managed HSM writes these at top level, Key Vault under properties.
        status = props.get("httpStatusCode", rec.get("httpStatusCode"))
        claims = _identity_claims(rec.get("identity"))
        kind_hint = _audit_operation(op)[1]
        return self._emit(
            rec,
            path,
            offset,
            time_value=rec.get("time"),
            op=op,
            category="AuditEvent",
            status=_status_code(status),
            signature=_str(rec.get("resultSignature")),
            result_type=_str(rec.get("resultType")),
            description=_str(rec.get("resultDescription")),
            claims=claims,
            tenant=_str(rec.get("tenantId") or rec.get("TenantId")),
            caller=None,
            ip=_str(rec.get("callerIpAddress")),
            client=_str(props.get("clientInfo") or rec.get("clientInfo")),
            object_id=_str(props.get("id")),
            request_uri=_str(props.get("requestUri") or rec.get("requestUri")),
            resource_id=_str(rec.get("resourceId")),
            subscription=None,
            correlation=_str(rec.get("correlationId")),
            duration=rec.get("durationMs"),
            location=_str(rec.get("location")),
            object_props=_object_props(props, kind_hint),
        )

    def _log_analytics(self, rec: dict[str, Any], path: str, offset: int) -> ParseOutcome:
        """AzureDiagnostics or AZKVAuditLogs row exported from Log Analytics."""
        op = rec.get("OperationName")
        if not isinstance(op, str) or not op:
            return quarantine(
                "missing_field",
                path,
                offset,
                _dump(rec),
                DATASET,
                "OperationName is empty or not a string",
            )
        table = rec.get("Type")
        azkv = table == "AZKVAuditLogs" or (
            table != "AzureDiagnostics"
            and ("Identity" in rec or "HttpStatusCode" in rec or "RequestUri" in rec)
        )
        kind_hint = _audit_operation(op)[1]
        time_value = rec.get("TimeGenerated", rec.get("TimeGenerated [UTC]"))
        if azkv:
            claims = _identity_claims(rec.get("Identity"))
            column = _AZKV_PROPERTY_COLUMNS.get(kind_hint or "")
            object_props = _load_dict(rec.get(column)) if column else None
            return self._emit(
                rec,
                path,
                offset,
                time_value=time_value,
                op=op,
                category="AuditEvent",
                status=_status_code(rec.get("HttpStatusCode")),
                signature=_str(rec.get("ResultSignature")),
                result_type=_str(rec.get("ResultType")),
                description=_str(rec.get("ResultDescription")),
                claims=claims,
                tenant=None,
                caller=None,
                ip=_str(rec.get("CallerIpAddress")),
                client=_str(rec.get("ClientInfo")),
                object_id=_str(rec.get("Id")),
                request_uri=_str(rec.get("RequestUri")),
                resource_id=_str(rec.get("_ResourceId") or rec.get("ResourceId")),
                subscription=_str(rec.get("_SubscriptionId") or rec.get("SubscriptionId")),
                correlation=_str(rec.get("CorrelationId")),
                duration=rec.get("DurationMs"),
                location=None,
                object_props=object_props,
            )
        rp = rec.get("ResourceProvider")
        if isinstance(rp, str) and rp and rp.upper() != "MICROSOFT.KEYVAULT":
            return Skipped("non_keyvault_event", path, offset)
        category = rec.get("Category")
        if isinstance(category, str) and category and category != "AuditEvent":
            return Skipped("non_audit_category", path, offset)
        claims = _diagnostics_claims(rec)
        return self._emit(
            rec,
            path,
            offset,
            time_value=time_value,
            op=op,
            category="AuditEvent",
            status=_status_code(rec.get("httpStatusCode_d")),
            signature=_str(rec.get("ResultSignature")),
            result_type=_str(rec.get("ResultType")),
            description=_str(rec.get("ResultDescription")),
            claims=claims,
            tenant=None,
            caller=None,
            ip=_str(rec.get("CallerIPAddress") or rec.get("CallerIpAddress")),
            client=_str(rec.get("clientInfo_s")),
            object_id=_str(rec.get("id_s")),
            request_uri=_str(rec.get("requestUri_s")),
            resource_id=_str(rec.get("ResourceId") or rec.get("_ResourceId")),
            subscription=_str(rec.get("SubscriptionId")),
            correlation=_str(rec.get("CorrelationId")),
            duration=rec.get("DurationMs"),
            location=None,
            object_props=_diagnostics_key_props(rec, kind_hint),
        )

    def _activity(self, rec: dict[str, Any], op: str, path: str, offset: int) -> ParseOutcome:
        """Activity Log record (diagnostic-settings export or REST / Event Grid shape)."""
        if not op.lower().startswith("microsoft.keyvault/") and not _vault_diagnostics(
                op, rec.get("resourceId")):
            return Skipped("non_keyvault_event", path, offset)
        result_type = _str(rec.get("resultType"))
        status_obj = rec.get("status")
        if result_type is None and isinstance(status_obj, dict):
            result_type = _str(status_obj.get("value"))
        signature = _str(rec.get("resultSignature"))
        if (result_type or "").lower() in _START_WORDS or (
            signature is not None and signature.lower().startswith("started")
        ):
            return Skipped("activity_start", path, offset)
        props = rec.get("properties")
        if not isinstance(props, dict):
            props = {}
        status = _status_code(props.get("statusCode"))
        if status is None:
            sub = rec.get("subStatus")
            if isinstance(sub, dict):
                status = _status_code(sub.get("value"))
        category = rec.get("category")
        if isinstance(category, dict):
            category = category.get("value")
        identity = rec.get("identity")
        claims = _identity_claims(identity)
        if not claims and isinstance(rec.get("claims"), dict):
            _collect_claims(rec["claims"], claims)
        ip = _str(rec.get("callerIpAddress"))
        http = rec.get("httpRequest")
        if ip is None and isinstance(http, dict):
            ip = _str(http.get("clientIpAddress"))
        extra_ap: dict[str, Any] = {}
        audit = _audit_logs_enabled(props) if _vault_diagnostics(op, rec.get("resourceId")) \
            else None
        if audit is not None:
            extra_ap["azure.keyvault.audit_logs_enabled"] = audit
        if "/accesspolicies/" in op.lower() or op.lower().endswith("/vaults/write"):
            # vaults/write also creates vaults and sets tags / network rules: only a request
            # body with accessPolicies says the access policy was (re)written.
            oids, perms = _access_policy_details(props)
            if oids:
                extra_ap["azure.keyvault.access_policy_object_ids"] = oids
            if perms:
                extra_ap["azure.keyvault.access_policy_permissions"] = perms
        return self._emit(
            rec,
            path,
            offset,
            time_value=rec.get("time", rec.get("eventTimestamp")),
            op=op,
            category=_str(category) or "Administrative",
            status=status,
            signature=signature,
            result_type=result_type,
            description=_str(rec.get("resultDescription")) or _str(props.get("statusMessage")),
            claims=claims,
            tenant=_str(rec.get("tenantId")),
            caller=_str(rec.get("caller")),
            ip=ip,
            client=None,
            object_id=None,
            request_uri=None,
            resource_id=_str(rec.get("resourceId")),
            subscription=_str(rec.get("subscriptionId")),
            correlation=_str(rec.get("correlationId")),
            duration=rec.get("durationMs"),
            location=_str(rec.get("location")),
            object_props=None,
            arm=True,
            vendor_id=_str(rec.get("eventDataId")),
            request_id=_str(props.get("serviceRequestId")),
            extra_more=extra_ap,
        )

    def _azure_activity_row(self, rec: dict[str, Any], path: str, offset: int) -> ParseOutcome:
        """Log Analytics AzureActivity row: the Activity Log with PascalCase *Value columns."""
        op = rec.get("OperationNameValue")
        if not isinstance(op, str) or not op:
            return quarantine(
                "missing_field",
                path,
                offset,
                _dump(rec),
                DATASET,
                "OperationNameValue is empty or not a string",
            )
        if not op.lower().startswith("microsoft.keyvault/") and not _vault_diagnostics(
                op, rec.get("_ResourceId") or rec.get("ResourceId")):
            return Skipped("non_keyvault_event", path, offset)
        result_type = _str(rec.get("ActivityStatusValue"))
        if (result_type or "").lower() in _START_WORDS:
            return Skipped("activity_start", path, offset)
        props = _load_dict(rec.get("Properties_d")) or _load_dict(rec.get("Properties")) or {}
        claims: dict[str, str] = {}
        raw_claims = _load_dict(rec.get("Claims_d")) or _load_dict(rec.get("Claims"))
        if raw_claims:
            _collect_claims(raw_claims, claims)
        status = _status_code(props.get("statusCode"))
        if status is None:
            status = _status_code(rec.get("ActivitySubstatusValue"))
        return self._emit(
            rec,
            path,
            offset,
            time_value=rec.get("TimeGenerated", rec.get("TimeGenerated [UTC]")),
            op=op,
            category=_str(rec.get("CategoryValue")) or "Administrative",
            status=status,
            signature=None,
            result_type=result_type,
            description=None,
            claims=claims,
            tenant=None,
            caller=_str(rec.get("Caller")),
            ip=_str(rec.get("CallerIpAddress")),
            client=None,
            object_id=None,
            request_uri=None,
            resource_id=_str(rec.get("_ResourceId") or rec.get("ResourceId")),
            subscription=_str(rec.get("SubscriptionId")),
            correlation=_str(rec.get("CorrelationId")),
            duration=None,
            location=None,
            object_props=None,
            arm=True,
        )

    # ------------------------------------------------------------ normalization

    def _emit(
        self,
        rec: dict[str, Any],
        path: str,
        offset: int,
        *,
        time_value: Any,
        op: str,
        category: str,
        status: int | None,
        signature: str | None,
        result_type: str | None,
        description: str | None,
        claims: dict[str, str],
        tenant: str | None,
        caller: str | None,
        ip: str | None,
        client: str | None,
        object_id: str | None,
        request_uri: str | None,
        resource_id: str | None,
        subscription: str | None,
        correlation: str | None,
        duration: Any,
        location: str | None,
        object_props: Mapping[str, Any] | None,
        arm: bool = False,
        vendor_id: str | None = None,
        request_id: str | None = None,
        extra_more: dict[str, Any] | None = None,
    ) -> ParseOutcome:
        if time_value is None:
            return quarantine(
                "missing_field", path, offset, _dump(rec), DATASET, "no time / TimeGenerated"
            )
        ts = _timestamp(time_value)
        if ts is None:
            return quarantine(
                "bad_timestamp",
                path,
                offset,
                _dump(rec),
                DATASET,
                f"unparseable time {str(time_value)[:64]!r}",
            )

        res = _resource(resource_id) if resource_id else None
        ap_op = None
        if arm:
            operation, kind_hint = _arm_operation(op)
            ref = res.object if res is not None else None
            if res is not None:
                ap_op = res.access_policy_op
        else:
            operation, kind_hint = _audit_operation(op)
            ref = parse_object_uri(object_id) if object_id else None
            if (ref is None or ref.kind is None) and request_uri:
                from_req = parse_object_uri(request_uri)
                if from_req is not None and (ref is None or from_req.kind is not None):
                    ref = from_req
            if ref is None and res is not None:
                ref = res.object

        spec, usage, enabled, expires = _key_attributes(object_props)
        if enabled is False and operation == "update_policy" and op.endswith("Update"):
            operation = "disable"

        outcome = _outcome(status, signature, result_type)
        user_id, user_name, ptype = _principal(claims, caller)
        tid = claims.get("tid") or tenant
        sub = _guid(subscription) if subscription else (res.subscription if res else None)
        region = location or (res.location if res else None)
        kind = ref.kind if ref is not None and ref.kind is not None else kind_hint
        provider = (
            ref.provider
            if ref is not None
            else (
                PROVIDER_HSM
                if resource_id and "/managedhsms/" in resource_id.lower()
                else PROVIDER_KV
            )
        )
        vault = ref.vault if ref is not None else None

        extra: dict[str, Any] = {
            "azure.keyvault.operation_name": op,
            "azure.keyvault.category": category,
            "azure.keyvault.object_type": kind or "vault",
        }
        if resource_id:
            extra["azure.keyvault.resource_id"] = resource_id
        if signature:
            extra["azure.keyvault.result_signature"] = signature
        if result_type:
            extra["azure.keyvault.result_type"] = result_type
        if status is not None:
            extra["azure.keyvault.http_status_code"] = status
        if tid:
            extra["azure.keyvault.tenant_id"] = tid
        appid = claims.get("appid")
        if appid:
            extra["azure.keyvault.app_id"] = appid
        mirid = claims.get("xms_mirid")
        if mirid:
            extra["azure.keyvault.managed_identity_resource_id"] = mirid
        if correlation:
            extra["azure.keyvault.correlation_id"] = correlation
        dur = _as_int(duration)
        if dur is not None:
            extra["azure.keyvault.duration_ms"] = dur
        if request_uri:
            # SAS sig= and other credentials in the query string (parsers/scrub.py)
            extra["azure.keyvault.request_uri"] = scrub_uri(request_uri)
        if enabled is not None:
            extra["azure.keyvault.enabled"] = enabled
        if ap_op:
            extra["azure.keyvault.access_policy_operation"] = ap_op
        if extra_more:
            extra.update(extra_more)

        error_code = None
        error_message = None
        if outcome == "failure":
            error_code = str(status) if status is not None else signature or result_type
            error_message = description

        raw = _dump(rec) if vendor_id is None or self.options.include_original else b""
        event_id = stable_id(DATASET, vendor_id) if vendor_id else stable_id(DATASET, raw)
        return new_event(
            timestamp=ts,
            event_id=event_id,
            dataset=DATASET,
            provider=PROVIDER,
            action=op,
            outcome=outcome,
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_code=error_code,
            error_message=error_message,
            key_uid=ref.uid if ref is not None else None,
            key_provider=provider,
            key_kind=kind,
            key_account=sub,
            key_region=region,
            key_vault=vault,
            key_name=ref.name if ref is not None else None,
            key_version=ref.version if ref is not None else None,
            key_spec=spec,
            key_usage=usage,
            key_origin="EXTERNAL" if op == "KeyImport" else None,
            key_expires_at=expires,
            user_id=user_id,
            user_name=user_name,
            principal_type=ptype,
            principal_account=tid,
            source_ip=clean_ip(ip) if ip else None,
            source_address=ip,
            user_agent=client,
            cloud_provider="azure",
            cloud_account_id=sub,
            cloud_region=region,
            request_id=request_id or vendor_id,
            original=raw.decode("utf-8", "replace") if self.options.include_original else None,
            extra=extra,
        )


def _object_props(props: Mapping[str, Any], kind: str | None) -> Mapping[str, Any] | None:
    if kind == _K:
        v = props.get("keyProperties")
    elif kind == _S:
        v = props.get("secretProperties")
    elif kind == _C:
        v = props.get("certificateProperties")
    else:
        return None
    return v if isinstance(v, dict) else None


@lru_cache(maxsize=1024)
def _audit_operation(op: str) -> tuple[str, str | None]:
    """AuditEvent operationName -> (operation, kind); unknown names are admin_other."""
    known = AUDIT_OPERATIONS.get(op) or _AUDIT_OPERATIONS_LOWER.get(op.lower())
    if known is not None:
        return known
    for prefix, kind in (("Key", _K), ("Secret", _S), ("Certificate", _C)):
        if op.startswith(prefix):
            return "admin_other", kind
    return "admin_other", None


@lru_cache(maxsize=1024)
def _arm_operation(op: str) -> tuple[str, str | None]:
    """Activity Log action (any letter case) -> (operation, object kind)."""
    if op.lower().startswith("microsoft.insights/"):
        return "admin_other", None  # a diagnostic setting of the vault, not the vault itself
    parts = op.lower().split("/")[1:]  # drop 'microsoft.keyvault'
    if parts and parts[-1] == "action":
        parts = parts[:-1]
    if not parts:
        return "admin_other", None
    kind = None
    if len(parts) >= 2 and parts[0] in ("vaults", "managedhsms"):
        kind = _ARM_KINDS.get(parts[1])
    verb = parts[-1]
    if verb == "write":
        if kind is not None and len(parts) == 3:
            return "create", kind
        if parts[-2:] == ["accesspolicies", "write"] or len(parts) == 2:
            return "update_policy", kind
        return "admin_other", kind
    if verb == "delete" and kind is None and len(parts) > 2:
        return "admin_other", None  # e.g. private endpoint connections
    return _ARM_VERBS.get(verb, "admin_other"), kind


def _dump(rec: Any) -> bytes:
    try:
        return orjson.dumps(rec)
    except TypeError:
        return repr(rec).encode("utf-8", "replace")


def _shifted(lines: Iterator[tuple[int, bytes]], base: int) -> Iterator[tuple[int, bytes]]:
    for offset, line in lines:
        yield base + offset, line


class _Counted:
    """A stream whose bytes are counted as lines on their way to compiled line framing."""

    def __init__(self, stream: IO[bytes], counter: LineCounter) -> None:
        self.read = counter.reader(stream.read)


__all__ = [
    "AUDIT_OPERATIONS",
    "DATASET",
    "EXTRA_FIELDS",
    "AzureKeyVaultParser",
    "ObjectRef",
    "parse_object_uri",
    "parse_resource_id",
]
