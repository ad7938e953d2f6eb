"""HashiCorp Vault / OpenBao audit device records -> KeyEvent (dataset hashicorp_vault.audit).

Covered (content-sniffed, never by file name):

* file audit device NDJSON: one `{"time", "type": "request" | "response", "auth", "request",
  "response", "error"}` object per line, any key order (OpenBao and nula-white style logs
  sort keys alphabetically), `time` RFC 3339 with 0-9 fractional digits and any offset;
* the same JSON behind a socket/syslog frame or an audit-device `prefix`: RFC 5424
  (`<134>1 2024-05-01T10:00:00Z host vault - - - {json}`), BSD (`<134>May  1 10:00:00 host
  vault[123]: {json}`), journald-ish (`May  1 10:00:00 host vault[12]: {json}`) or any
  other text before the first `{"`: the prefix is stripped (the syslog host, when there is
  one, goes to `hashicorp_vault.syslog_host`) and `event.id` is computed from the JSON alone,
  so the same record delivered by a file device and a socket device gets the same id;
* Vault Enterprise KMIP records (`kmip-request` / `kmip-response`).

Pairing. Vault writes a request record when a request arrives and a response record (which
repeats the request block) when it completes; both carry `request.id`. They become ONE
event: the response record yields the KeyEvent (outcome from the response; `@timestamp` =
the request's `time`; `log.offset` = the response's byte offset, the request's offset is in
`hashicorp_vault.request_offset`) and the request record yields `Skipped("paired_request")`,
emitted just before that event, when the pair completes. A response whose request was not
seen is an event on its own. A request never answered by the end of the file becomes an
event with outcome `unknown` (`failure` if the request record itself carries an `error`).
Pending requests are kept in a table bounded by `MAX_PENDING` entries and by
`MAX_PENDING_BYTES` raw bytes (see there); on overflow the oldest is flushed as an
unanswered-request event, so memory stays bounded and the output
order depends only on the input order. Records without `request.id` (the Elastic KMIP
examples, `help` requests) are paired on a hash of their canonical `request` block.
Requests routed to a skip reason are skipped at once and never wait in the table.

`log.offset` is the byte offset of the record's line in the decompressed stream.
`event.id` = stable_id(dataset, request.id, options.vault_cluster); records without a
request id use stable_id(dataset, <JSON bytes of the record that yields the event>).

Routing (`request.path`; mount from `request.mount_point` when present, else from
`mount_type` and the path shape, else from the mount name: Vault mounts default to their
engine name, e.g. `transit/`, `pki_int/`, `kv-v2/`, `secret/`):

* transit -> provider vault_transit, kind key, uid `vault://<cluster>/<ns><mount>/keys/<name>`
  (encrypt, decrypt, rewrap=reencrypt, datakey=generate_data_key, sign, verify, hmac=mac,
  keys create/describe/destroy/list, rotate, config=update_policy (the non-HMAC'd booleans
  and numbers of the request go to `hashicorp_vault.key_config.*`), trim=admin_other (old
  versions trimmed, the key stays usable), export (public-key / certificate-chain exports
  are `describe`: no secret leaves), byok-export=export, backup, restore, import;
  random / hash are skipped `not_key_related`; cache-config / config / wrapping_key are
  admin_other / describe);
* kv v1/v2 -> provider vault_kv, kind secret, uid `vault://<cluster>/<ns><mount>/secrets/<path>`
  (data read=export, write/patch=create (a new version), data delete / delete=
  schedule_deletion (v2 soft delete), undelete=cancel_deletion, destroy / metadata delete /
  v1 delete=destroy, metadata read=describe, metadata write=update_policy, list=list);
* pki -> provider vault_pki (not yet in the schema's provider list), kind certificate,
  uid `vault://<cluster>/<ns><mount>/ca` for the mount's CA
  (issue/<role> and sign* = sign with the CA key, root|intermediate generate=create,
  root/rotate=rotate, intermediate/set-signed=import), `.../issuers/<ref>` and (kind key)
  `.../keys/<ref>` for the multi-issuer API; public CA / CRL / cert reads are skipped;
* KMIP -> provider vault_kmip, kind key, uid `vault://<cluster>/<ns><mount>/scopes/<scope>/
  keys/<unique identifier>` (`.../keys/<id>` without a scope);
* sys/*, auth/* -> key_uid None: policies = update_policy, login, token creation
  (`hashicorp_vault.orphan`, `hashicorp_vault.new_token_policies`), audit devices, seal,
  unseal, rekey, generate-root, mounts, auth methods, leases = admin_other (reads describe,
  lists list); health / status / UI probes are skipped `health_or_ui_probe`, token
  lookup-self / renew-self `token_self_service`, `help` requests `help_request`, the
  synthetic `sys/audit/test` record Vault writes when a device is enabled
  `audit_device_test`;
* every other engine (cubbyhole, identity, totp, database, ...) is skipped `not_key_related`.

`event.provider` is the engine (transit, kv, pki, kmip, system, auth, token).
`event.action` is `request.operation` verbatim (create / read / update / delete / list /
patch), or the KMIP operation name; the engine-relative endpoint template (e.g.
`transit/keys/rotate`) is `hashicorp_vault.endpoint`.

Principal: user.id = auth.entity_id, else `token:<auth.accessor>` (HMAC'd as logged), else
`cert:<serial>` for KMIP clients; user.name = auth.display_name (the login path's user name
for a failed login); keytrail.principal.type = `root_token` when the token's policies include
`root` (then `hashicorp_vault.root_token` is true), else auth.token_type, else `token`;
`unauthenticated` when no token resolved (logins, unseal: auth is only {"token_type":
"default"}); `kmip_client` for KMIP clients (authenticated by TLS certificate).
HMAC'd values are kept exactly as logged; nothing is ever unhashed.

Partly documented / assumed: Vault does not publish a schema for KMIP audit records. The only
public examples (Elastic's pipeline tests) carry the KMIP TTLV message as JSON in
`request.data.kmip_request` / `response.data.kmip_response`; the operation and result are
decoded from there (KMIP 1.x enumerations). A flat `kmip_operation` string in `request` or
`request.data` is also accepted, and the scope / role are read from `scope` / `role` in
`request`, `request.data` or `auth.metadata` when present (assumed names). Mount types are
inferred from the mount name and path shape when the log has neither `mount_point` nor
`mount_type` (Vault before 1.13 often omits both).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import IO, Any, Final, NamedTuple

import orjson

from parsers import framing, schema
from parsers.base import (
    LogParser,
    ParseOptions,
    ParseOutcome,
    Skipped,
    json_error,
    quarantine,
    record_failure,
    register,
    stable_id,
)
from parsers.framing import OVERLONG, iter_lines, too_long
from parsers.native import NATIVE
from parsers.netaddr import clean_ip
from parsers.schema import KeyEvent, new_event
from parsers.scrub import scrub_vault_path
from parsers.timeutil import BadTimestamp, normalize_iso

DATASET: Final[str] = "hashicorp_vault.audit"
MAX_PENDING: Final[int] = 10_000
# The pending table is bounded by bytes too: requests longer than LARGE_REQUEST_BYTES are
# kept as raw bytes only (re-parsed when answered, as the fast path does for all) and,
# whenever one arrives, the oldest requests are flushed as unanswered until the table's
# raw bytes fit MAX_PENDING_BYTES. The fast path hands such requests to Python. Smaller
# requests are bounded by MAX_PENDING x LARGE_REQUEST_BYTES (160 MiB) in the worst case.
MAX_PENDING_BYTES: Final[int] = 64 << 20
LARGE_REQUEST_BYTES: Final[int] = 16 << 10

# This family's vendor leftovers (defined with every other field in schema.EXTRA_FIELDS).
EXTRA_FIELDS: Final[dict[str, tuple[str, str]]] = {
    k: v for k, v in schema.EXTRA_FIELDS.items() if k.startswith("hashicorp_vault.")
}

_RECORD_TYPES: Final[frozenset[str]] = frozenset(
    {"request", "response", "kmip-request", "kmip-response"}
)
_KEY_CONFIG_FIELDS: Final[tuple[str, ...]] = (
    "exportable",
    "deletion_allowed",
    "allow_plaintext_backup",
    "derived",
    "min_decryption_version",
    "min_encryption_version",
    "auto_rotate_period",
)


class Route(NamedTuple):
    """Where a request lands: the engine, the vocabulary operation and the key it names."""

    engine: str
    mount: str | None
    operation: str | None  # None: skipped with `skip`
    skip: str | None = None
    uid_suffix: str | None = None  # appended to vault://<cluster>/<ns><mount>/
    key_name: str | None = None
    kind: str | None = None
    key_provider: str | None = None
    endpoint: str = ""
    qualifier: str | None = None
    key_version: str | None = None


def _skip(engine: str, reason: str, mount: str | None = None) -> Route:
    return Route(engine, mount, None, reason)


def _read_op(op: str, default: str = "admin_other") -> str:
    """Reads of administrative paths are `describe`, lists `list`, writes `default`."""
    if op == "read":
        return "describe"
    if op == "list":
        return "list"
    return default


# ---------------------------------------------------------------------------------------
# transit
_TRANSIT_SIMPLE: Final[dict[str, str]] = {
    "encrypt": "encrypt",
    "decrypt": "decrypt",
    "rewrap": "reencrypt",
    "sign": "sign",
    "verify": "verify",
    "hmac": "mac",
    "backup": "backup",
}
_TRANSIT_KEY_SUB: Final[dict[str, str]] = {
    "rotate": "rotate",
    "config": "update_policy",
    "trim": "admin_other",  # old versions' material is removed, the key itself stays usable
    "import": "import",
    "import_version": "import",
    "csr": "admin_other",
    "set-certificate": "admin_other",
}
_TRANSIT_VERBS: Final[frozenset[str]] = frozenset(
    {*_TRANSIT_SIMPLE, "datakey", "keys", "export", "byok-export", "restore", "random",
     "hash", "cache-config", "wrapping_key"}
)
_PUBLIC_EXPORTS: Final[frozenset[str]] = frozenset({"public-key", "certificate-chain"})


def _transit(mount: str, segs: list[str], op: str) -> Route:
    tk = ("transit", mount)
    if not segs:
        return Route(*tk, _read_op(op), endpoint="transit")
    verb, n = segs[0], len(segs)

    def key(name: str, operation: str, endpoint: str, qual: str | None = None,
            version: str | None = None) -> Route:
        return Route(*tk, operation, None, "keys/" + name, name, "key", "vault_transit",
                     "transit/" + endpoint, qual, version)

    simple = _TRANSIT_SIMPLE.get(verb)
    if simple is not None and n >= 2:
        return key(segs[1], simple, verb, segs[2] if n >= 3 else None)
    if verb == "datakey" and n >= 3:
        return key(segs[2], "generate_data_key", "datakey", segs[1])
    if verb == "keys":
        if n == 1:
            return Route(*tk, "list", endpoint="transit/keys")
        if n == 2:
            if op in ("create", "update"):
                return key(segs[1], "create", "keys")
            if op == "delete":
                return key(segs[1], "destroy", "keys")
            return key(segs[1], _read_op(op), "keys")
        sub = _TRANSIT_KEY_SUB.get(segs[2], "admin_other")
        if segs[2] == "config" and op == "read":
            sub = "describe"
        return key(segs[1], sub, "keys/" + segs[2])
    if verb == "export" and n >= 3:
        operation = "describe" if segs[1] in _PUBLIC_EXPORTS else "export"
        return key(segs[2], operation, "export", segs[1], segs[3] if n >= 4 else None)
    if verb == "byok-export" and n >= 3:
        return key(segs[2], "export", "byok-export", segs[1], segs[3] if n >= 4 else None)
    if verb == "restore":
        if n >= 2:
            return key(segs[1], "restore", "restore")
        return Route(*tk, "restore", endpoint="transit/restore")
    if verb in ("random", "hash"):
        return _skip("transit", "not_key_related", mount)
    if verb == "wrapping_key":
        return Route(*tk, "describe", endpoint="transit/wrapping_key")
    return Route(*tk, _read_op(op), endpoint="transit/" + verb)


# ---------------------------------------------------------------------------------------
# kv
_KV2_SUBS: Final[frozenset[str]] = frozenset(
    {"data", "metadata", "delete", "undelete", "destroy", "subkeys", "config"}
)
_KV_WRITE: Final[frozenset[str]] = frozenset({"create", "update", "patch"})


def _kv(mount: str, segs: list[str], op: str) -> Route:
    tk = ("kv", mount)

    def secret(path: str, operation: str, endpoint: str) -> Route:
        if not path or operation == "list":
            return Route(*tk, operation, endpoint=endpoint)
        return Route(*tk, operation, None, "secrets/" + path, path, "secret", "vault_kv",
                     endpoint)

    if segs and segs[0] in _KV2_SUBS:
        sub, path = segs[0], "/".join(segs[1:])
        endpoint = "kv/" + sub
        if sub == "data":
            if op == "read":
                return secret(path, "export", endpoint)  # secret material leaves Vault
            if op in _KV_WRITE:
                return secret(path, "create", endpoint)
            if op == "delete":
                return secret(path, "schedule_deletion", endpoint)
            return secret(path, _read_op(op), endpoint)
        if sub == "metadata":
            if op in _KV_WRITE:
                return secret(path, "update_policy", endpoint)
            if op == "delete":
                return secret(path, "destroy", endpoint)  # all versions and metadata
            return secret(path, _read_op(op), endpoint)
        if sub == "delete":
            return secret(path, "schedule_deletion", endpoint)
        if sub == "undelete":
            return secret(path, "cancel_deletion", endpoint)
        if sub == "destroy":
            return secret(path, "destroy", endpoint)
        if sub == "subkeys":
            return secret(path, "describe", endpoint)
        return Route(*tk, _read_op(op), endpoint=endpoint)
    path = "/".join(segs)
    if op == "read":
        return secret(path, "export", "kv/v1")
    if op in _KV_WRITE:
        return secret(path, "create", "kv/v1")
    if op == "delete":
        return secret(path, "destroy", "kv/v1")  # KV v1 has no versions: a delete is final
    return secret(path, _read_op(op), "kv/v1")


# ---------------------------------------------------------------------------------------
# pki
_PKI_VERBS: Final[frozenset[str]] = frozenset(
    {"issue", "sign", "sign-verbatim", "root", "intermediate", "issuer", "issuers", "key",
     "keys", "revoke", "revoke-with-key", "roles", "config", "tidy", "tidy-status",
     "tidy-cancel", "ca", "ca_chain", "cert", "certs", "crl", "ocsp", "unified-crl",
     "unified-ocsp", "acme", "cert-metadata"}
)
_PKI_PUBLIC: Final[frozenset[str]] = frozenset(
    {"ca", "ca_chain", "cert", "crl", "ocsp", "unified-crl", "unified-ocsp", "der", "pem",
     "json"}
)


def _pki(mount: str, segs: list[str], op: str) -> Route:
    tk = ("pki", mount)

    def ca(operation: str, endpoint: str, qual: str | None = None,
           suffix: str = "ca", kind: str = "certificate") -> Route:
        return Route(*tk, operation, None, suffix, None, kind, None, "pki/" + endpoint, qual)

    if not segs:
        return Route(*tk, _read_op(op), endpoint="pki")
    verb, n = segs[0], len(segs)
    if verb == "issue" and n >= 2:
        return ca("sign", "issue", segs[1])
    if verb in ("sign", "sign-verbatim"):
        return ca("sign", verb, segs[1] if n >= 2 else None)
    if verb == "root":
        sub = segs[1] if n >= 2 else ""
        if sub == "generate":
            return ca("create", "root/generate", segs[2] if n >= 3 else None)
        if sub == "rotate":
            return ca("rotate", "root/rotate", segs[2] if n >= 3 else None)
        if sub in ("sign-intermediate", "sign-self-issued"):
            return ca("sign", "root/" + sub)
        if n == 1 and op == "delete":
            return ca("destroy", "root")
        return Route(*tk, _read_op(op), endpoint="pki/root/" + sub)
    if verb == "intermediate":
        sub = segs[1] if n >= 2 else ""
        if sub == "generate":
            return ca("create", "intermediate/generate", segs[2] if n >= 3 else None)
        if sub == "set-signed":
            return ca("import", "intermediate/set-signed")
        if sub == "cross-sign":
            return ca("sign", "intermediate/cross-sign")
        return Route(*tk, _read_op(op), endpoint="pki/intermediate/" + sub)
    if verb == "issuers":
        sub = segs[1] if n >= 2 else ""
        if sub == "generate":
            return ca("create", "issuers/generate", "/".join(segs[2:]) or None)
        if sub == "import":
            return ca("import", "issuers/import", "/".join(segs[2:]) or None)
        return Route(*tk, _read_op(op), endpoint="pki/issuers")
    if verb == "issuer" and n >= 2:
        ref = segs[1]
        if n >= 3 and segs[2].startswith(("issue", "sign")):
            return ca("sign", "issuer/" + segs[2], segs[3] if n >= 4 else None,
                      "issuers/" + ref)
        if n >= 3:
            return ca(_read_op(op), "issuer/" + segs[2], None, "issuers/" + ref)
        operation = {"delete": "destroy", "update": "update_policy",
                     "patch": "update_policy"}.get(op) or _read_op(op)
        return ca(operation, "issuer", None, "issuers/" + ref)
    if verb == "keys":
        sub = segs[1] if n >= 2 else ""
        if sub == "generate":
            return Route(*tk, "create", endpoint="pki/keys/generate",
                         qualifier=segs[2] if n >= 3 else None)
        if sub == "import":
            return Route(*tk, "import", endpoint="pki/keys/import")
        return Route(*tk, _read_op(op), endpoint="pki/keys")
    if verb == "key" and n >= 2:
        operation = {"delete": "destroy", "update": "update_policy",
                     "patch": "update_policy"}.get(op) or _read_op(op)
        return ca(operation, "key", None, "keys/" + segs[1], "key")
    if verb == "roles":
        if op in _KV_WRITE or op == "delete":
            return Route(*tk, "update_policy", endpoint="pki/roles",
                         qualifier=segs[1] if n >= 2 else None)
        return Route(*tk, _read_op(op), endpoint="pki/roles",
                     qualifier=segs[1] if n >= 2 else None)
    if verb == "certs":
        return Route(*tk, "list", endpoint="pki/certs")
    if op in ("read", "list") and (verb in _PKI_PUBLIC or verb.startswith(("ca", "crl"))):
        return _skip("pki", "not_key_related", mount)  # public CA / CRL / OCSP fetches
    return Route(*tk, _read_op(op), endpoint="pki/" + verb)


# ---------------------------------------------------------------------------------------
# sys and auth
_PROBES: Final[frozenset[str]] = frozenset(
    {"health", "seal-status", "leader", "ha-status", "internal", "capabilities-self",
     "capabilities", "capabilities-accessor", "host-info", "metrics", "version-history",
     "key-status", "in-flight-req", "pprof", "init", "seal-backend-status", "storage"}
)
_POLICY_KINDS: Final[frozenset[str]] = frozenset({"acl", "rgp", "egp", "password"})


def _sys(segs: list[str], op: str) -> Route:
    tk = ("system", "sys")
    first = segs[0] if segs else ""
    if first in _PROBES or (first == "config" and segs[1:2] == ["state"]):
        return _skip("system", "health_or_ui_probe", "sys")
    if first in ("replication", "license") and segs[-1] == "status":
        return _skip("system", "health_or_ui_probe", "sys")
    if first == "tools" and segs[1:2] and segs[1] in ("random", "hash"):
        return _skip("system", "not_key_related", "sys")
    if first in ("policy", "policies"):
        name = None
        if first == "policy" and len(segs) >= 2:
            name = segs[1]
        elif first == "policies" and len(segs) >= 3 and segs[1] in _POLICY_KINDS:
            name = "/".join(segs[2:])
        if name is not None and op in ("create", "update", "patch", "delete"):
            return Route(*tk, "update_policy", endpoint="sys/" + "/".join(segs[:2]),
                         qualifier=name)
        return Route(*tk, _read_op(op), endpoint="sys/" + "/".join(segs[:2]), qualifier=name)
    if first == "audit":
        device = "/".join(segs[1:]) or None
        operation = "list" if op in ("read", "list") and device is None else _read_op(op)
        return Route(*tk, operation, endpoint="sys/audit", qualifier=device)
    return Route(*tk, _read_op(op), endpoint="sys/" + first)


_TOKEN_SELF: Final[frozenset[str]] = frozenset({"lookup-self", "renew-self"})


def _auth(segs: list[str], op: str, mount_type: str | None) -> Route:
    if not segs:
        return Route("auth", "auth", _read_op(op), endpoint="auth")
    if segs[0] == "token":
        tk = ("token", "auth/token")
        sub = segs[1] if len(segs) >= 2 else ""
        if sub in _TOKEN_SELF:
            return _skip("token", "token_self_service", "auth/token")
        if sub in ("create", "create-orphan"):
            return Route(*tk, "admin_other", endpoint="auth/token/" + sub,
                         qualifier=segs[2] if len(segs) >= 3 else None)
        if sub.startswith("lookup"):
            return Route(*tk, "describe", endpoint="auth/token/" + sub)
        return Route(*tk, _read_op(op), endpoint="auth/token/" + sub)
    try:
        i = segs.index("login", 1)
    except ValueError:
        mount = "auth/" + segs[0]
        return Route("auth", mount, _read_op(op), endpoint="auth/" + (mount_type or segs[0]))
    mount = "auth/" + "/".join(segs[:i])
    user = "/".join(segs[i + 1:]) or None
    return Route("auth", mount, "login", endpoint="auth/login", qualifier=user)


# ---------------------------------------------------------------------------------------
# mount resolution
_ENGINE_ALIASES: Final[dict[str, str]] = {
    "transit": "transit",
    "kv": "kv",
    "kv-v1": "kv",
    "kv-v2": "kv",
    "generic": "kv",
    "pki": "pki",
    "kmip": "kmip",
}
_ENGINE_VERBS: Final[dict[str, frozenset[str]]] = {
    "transit": _TRANSIT_VERBS,
    "kv": _KV2_SUBS,
    "pki": _PKI_VERBS,
}
_NAME_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("transit", "transit"),
    ("kv", "kv"),
    ("secret", "kv"),
    ("pki", "pki"),
    ("kmip", "kmip"),
)
# Path-shape fallback for mounts with neither mount_type nor a telling name. Verbs shared
# by several engines (sign, verify, keys) are left out on purpose.
_SHAPE_HINTS: Final[dict[str, str]] = {
    "encrypt": "transit",
    "decrypt": "transit",
    "rewrap": "transit",
    "datakey": "transit",
    "hmac": "transit",
    "export": "transit",
    "backup": "transit",
    "restore": "transit",
    "data": "kv",
    "metadata": "kv",
    "undelete": "kv",
    "destroy": "kv",
    "issue": "pki",
    "intermediate": "pki",
    "root": "pki",
    "issuer": "pki",
    "issuers": "pki",
}


def _engine_from_name(name: str) -> str | None:
    low = name.lower()
    for prefix, engine in _NAME_PREFIXES:
        if low.startswith(prefix):
            return engine
    return None


@lru_cache(maxsize=65536)
def route(path: str, op: str, mount_point: str | None, mount_type: str | None) -> Route:
    """Classify one request (pure, cached: paths repeat a lot in audit logs)."""
    path = path.lstrip("/")
    if op == "help":
        return _skip("other", "help_request")
    if path.startswith("sys/"):
        return _sys([s for s in path[4:].split("/") if s], op)
    if path == "sys":
        return Route("system", "sys", _read_op(op), endpoint="sys")
    if path.startswith("auth/"):
        return _auth([s for s in path[5:].split("/") if s], op, mount_type)
    segs = [s for s in path.split("/") if s]
    if not segs:
        return _skip("other", "not_key_related")
    engine = _ENGINE_ALIASES.get(mount_type or "") if mount_type else None
    if mount_point and path.startswith(mount_point):
        mount = mount_point.strip("/")
        rest = [s for s in path[len(mount_point):].split("/") if s]
        if engine is None and not mount_type:
            engine = _engine_from_name(mount.rsplit("/", 1)[-1])
    else:
        if engine is None and not mount_type:
            engine = _engine_from_name(segs[0])
            if engine is None and len(segs) >= 2:
                engine = _SHAPE_HINTS.get(segs[1])
        split = 1
        verbs = _ENGINE_VERBS.get(engine or "")
        if verbs is not None and len(segs) > 2 and segs[1] not in verbs:
            # Multi-segment mount (e.g. team-a/transit/encrypt/k): split at the first verb.
            for i in range(2, len(segs)):
                if segs[i] in verbs:
                    split = i
                    break
        mount, rest = "/".join(segs[:split]), segs[split:]
    if engine == "transit":
        return _transit(mount, rest, op)
    if engine == "kv":
        return _kv(mount, rest, op)
    if engine == "pki":
        return _pki(mount, rest, op)
    if engine == "kmip":
        return Route("kmip", mount, _read_op(op), endpoint="kmip/" + (rest[0] if rest else ""))
    return _skip(mount_type or "other", "not_key_related", mount)


# ---------------------------------------------------------------------------------------
# KMIP (TTLV-as-JSON messages)
_KMIP_OPS: Final[dict[int, str]] = {
    0x01: "Create", 0x02: "CreateKeyPair", 0x03: "Register", 0x04: "ReKey",
    0x05: "DeriveKey", 0x06: "Certify", 0x07: "ReCertify", 0x08: "Locate", 0x09: "Check",
    0x0A: "Get", 0x0B: "GetAttributes", 0x0C: "GetAttributeList", 0x0D: "AddAttribute",
    0x0E: "ModifyAttribute", 0x0F: "DeleteAttribute", 0x10: "ObtainLease",
    0x11: "GetUsageAllocation", 0x12: "Activate", 0x13: "Revoke", 0x14: "Destroy",
    0x15: "Archive", 0x16: "Recover", 0x17: "Validate", 0x18: "Query", 0x19: "Cancel",
    0x1A: "Poll", 0x1B: "Notify", 0x1C: "Put", 0x1D: "ReKeyKeyPair",
    0x1E: "DiscoverVersions", 0x1F: "Encrypt", 0x20: "Decrypt", 0x21: "Sign",
    0x22: "SignatureVerify", 0x23: "MAC", 0x24: "MACVerify", 0x25: "RNGRetrieve",
    0x26: "RNGSeed", 0x27: "Hash", 0x28: "CreateSplitKey", 0x29: "JoinSplitKey",
    0x2A: "Import", 0x2B: "Export", 0x2C: "Log", 0x2D: "Login", 0x2E: "Logout",
    0x2F: "DelegatedLogin", 0x30: "AdjustAttribute", 0x31: "SetAttribute",
    0x32: "SetEndpointRole", 0x33: "PKCS_11", 0x34: "Interop", 0x35: "ReProvision",
}
_KMIP_VOCAB: Final[dict[str, str | None]] = {
    "Create": "create", "CreateKeyPair": "create", "Register": "import", "ReKey": "rotate",
    "ReKeyKeyPair": "rotate", "DeriveKey": "derive", "Locate": "list", "Check": "describe",
    "Get": "export",  # Get returns the managed object's key material to the client
    "GetAttributes": "describe", "GetAttributeList": "describe",
    "AddAttribute": "update_policy", "ModifyAttribute": "update_policy",
    "DeleteAttribute": "update_policy", "SetAttribute": "update_policy",
    "AdjustAttribute": "update_policy", "Activate": "enable", "Revoke": "disable",
    "Destroy": "destroy", "Recover": "restore", "Encrypt": "encrypt", "Decrypt": "decrypt",
    "Sign": "sign", "SignatureVerify": "verify", "MAC": "mac", "MACVerify": "verify",
    "Import": "import", "Export": "export",
    # protocol handshakes, no key involved
    "DiscoverVersions": None, "Query": None, "Poll": None, "Cancel": None,
}
_KMIP_REASONS: Final[dict[int, str]] = {
    0x01: "Item Not Found", 0x02: "Response Too Large", 0x03: "Authentication Not Successful",
    0x04: "Invalid Message", 0x05: "Operation Not Supported", 0x06: "Missing Data",
    0x07: "Invalid Field", 0x08: "Feature Not Supported",
    0x09: "Operation Canceled By Requester", 0x0A: "Cryptographic Failure",
    0x0B: "Illegal Operation", 0x0C: "Permission Denied", 0x0D: "Object Archived",
    0x0E: "Index Out of Bounds", 0x0F: "Application Namespace Not Supported",
    0x10: "Key Format Type Not Supported", 0x11: "Key Compression Type Not Supported",
    0x100: "General Failure",
}


def _ttlv_find(node: Any, tag: str, depth: int = 0) -> Any:
    """First `value` of an item tagged `tag` in a TTLV-as-JSON tree (depth-first, bounded)."""
    if depth > 16:
        return None
    if isinstance(node, dict):
        if node.get("tag") == tag:
            return node.get("value")
        return _ttlv_find(node.get("value"), tag, depth + 1)
    if isinstance(node, list):
        for item in node[:64]:
            found = _ttlv_find(item, tag, depth + 1)
            if found is not None:
                return found
    return None


def _ttlv_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value[:2].lower() == "0x" else int(value)
        except ValueError:
            return None
    return None


def _kmip_op_name(value: Any) -> str | None:
    if isinstance(value, str) and value and value[:2].lower() != "0x" \
            and not value.isdigit():
        return value
    code = _ttlv_int(value)
    if code is None:
        return None
    return _KMIP_OPS.get(code, f"0x{code:08x}")


# ---------------------------------------------------------------------------------------
# small helpers
def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _str_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def error_message(raw: str) -> str:
    """Strip hashicorp/go-multierror framing: '1 error occurred:\\n\\t* x\\n\\n' -> 'x'."""
    if "occurred:" not in raw:
        return raw.strip()
    items = [ln.strip()[2:].strip() for ln in raw.split("\n") if ln.strip().startswith("* ")]
    return "; ".join(items) if items else raw.strip()


@lru_cache(maxsize=65536)
def _uid(cluster: str, ns: str, mount: str, suffix: str) -> str:
    return f"vault://{cluster}/{ns}{mount}/{suffix}"


def _syslog_host(prefix: bytes) -> str | None:
    """Host name of an RFC 5424 / BSD / journald syslog frame, else None."""
    try:
        toks = prefix.decode("utf-8", "replace").split()
    except Exception:  # defensive: a frame is optional metadata
        return None
    if not toks:
        return None
    first = toks[0]
    if first.startswith("<") and ">" in first:
        rest = first[first.index(">") + 1:]
        if rest.isdigit():  # RFC 5424: <pri>1 TIMESTAMP HOST APP PROCID MSGID SD
            return toks[2] if len(toks) > 2 and toks[2] != "-" else None
        # BSD: <pri>Mmm dd hh:mm:ss HOST tag[pid]:
        return toks[3] if len(toks) > 4 else None
    if len(first) == 3 and first.isalpha() and len(toks) > 4:  # journald / file syslog
        return toks[3]
    if len(first) >= 19 and first[4:5] == "-" and len(toks) > 2:  # ISO-stamped syslog
        return toks[1]
    return None


def _split_frame(line: bytes) -> tuple[bytes, bytes]:
    """(prefix, JSON) of a line: any text before the first '{"' is a frame / audit prefix."""
    if line[:1] == b"{":
        return b"", line
    i = line.find(b'{"')
    if i <= 0:
        return b"", line
    return line[:i], line[i:]


def _principal_parts(auth: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fields, extra) describing the token in an audit `auth` block."""
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    entity = _s(auth.get("entity_id"))
    accessor = _s(auth.get("accessor"))
    if entity:
        fields["user_id"] = entity
    elif accessor:
        fields["user_id"] = "token:" + accessor
    name = _s(auth.get("display_name"))
    if name:
        fields["user_name"] = name
    # `policies` are the effective ones (token + identity); token_policies the token's own.
    policies = _str_list(auth.get("policies"))
    token_policies = _str_list(auth.get("token_policies"))
    is_root = "root" in policies or "root" in token_policies
    policies = policies or token_policies
    token_type = _s(auth.get("token_type"))
    if is_root:
        fields["principal_type"] = "root_token"
        extra["hashicorp_vault.root_token"] = True
    elif entity or accessor or name:
        fields["principal_type"] = token_type or "token"
    else:
        # Only {"token_type": "default"}: no token resolved (login, unseal, bad token).
        fields["principal_type"] = "unauthenticated"
    if accessor:
        fields["session_id"] = accessor
        extra["hashicorp_vault.accessor"] = accessor
    if policies:
        extra["hashicorp_vault.policies"] = policies
    if token_type:
        extra["hashicorp_vault.token_type"] = token_type
    return fields, extra


_DYN_LOGIN: Final[int] = 1
_DYN_TOKEN: Final[int] = 2
_DYN_TRANSIT: Final[int] = 4
_DYN_KEYCFG: Final[int] = 8
_DYN_KV: Final[int] = 16


class _Plan(NamedTuple):
    """A route plus the event parts that depend only on it (built once per distinct path)."""

    route: Route
    extra: dict[str, Any]
    fields: dict[str, Any]
    dynamic: int  # _DYN_* flags: what still needs the record's data


@lru_cache(maxsize=65536)
def _plan(path: str, op: str, mount_point: str | None, mount_type: str | None) -> _Plan:
    r = route(path, op, mount_point, mount_type)
    extra: dict[str, Any] = {
        "hashicorp_vault.path": scrub_vault_path(path),  # raw tokens in token-in-URL paths
        "hashicorp_vault.operation": op,
        "hashicorp_vault.endpoint": r.endpoint,
    }
    if mount_type:
        extra["hashicorp_vault.mount_type"] = mount_type
    if r.mount:
        extra["hashicorp_vault.mount_point"] = r.mount
    fields: dict[str, Any] = {}
    dynamic = 0
    if r.operation == "login":
        dynamic |= _DYN_LOGIN
        extra["hashicorp_vault.auth_method"] = mount_type or (r.mount or "")[5:]
    elif r.qualifier is not None:
        if r.endpoint.startswith("sys/polic"):
            extra["hashicorp_vault.policy_name"] = r.qualifier
        elif r.endpoint == "sys/audit":
            extra["hashicorp_vault.audit_device"] = r.qualifier
        else:
            extra["hashicorp_vault.qualifier"] = r.qualifier
    if r.endpoint.startswith("auth/token/create"):
        dynamic |= _DYN_TOKEN
        if r.endpoint == "auth/token/create-orphan":
            extra["hashicorp_vault.orphan"] = True
    if r.kind is None:
        if r.mount and r.engine in ("transit", "kv", "pki"):
            fields["key_vault"] = r.mount
    else:
        fields["key_kind"] = r.kind
        fields["key_provider"] = r.key_provider or "vault_pki"
        fields["key_vault"] = r.mount
        if r.key_name:
            fields["key_name"] = r.key_name
        if r.kind == "secret":
            fields["resource"] = r.key_name
        if r.engine == "transit":
            dynamic |= _DYN_TRANSIT
            if r.endpoint in ("transit/keys/config", "transit/keys") and r.operation != "describe":
                dynamic |= _DYN_KEYCFG
        elif r.engine == "kv":
            dynamic |= _DYN_KV
    if r.key_version is not None and not dynamic:
        fields["key_version"] = r.key_version
    return _Plan(r, extra, fields, dynamic)


class _Pending(NamedTuple):
    offset: int
    record: dict[str, Any] | None  # None: stored by the native fast path, re-read from raw
    timestamp: str
    raw: bytes
    host: str | None
    plan: _Plan | None


def _record_of(p: _Pending) -> dict[str, Any]:
    """The request record of a pending entry (the fast path keeps only its bytes)."""
    if p.record is not None:
        return p.record
    rec: dict[str, Any] = orjson.loads(p.raw)
    return rec


@register
class VaultAuditParser(LogParser):
    """HashiCorp Vault / OpenBao audit device (file NDJSON, syslog / socket framed, KMIP)."""

    id = "hashicorp_vault_audit"
    dataset = DATASET
    description = "HashiCorp Vault / OpenBao audit device records (file, socket, syslog, KMIP)"

    def __init__(self, options: ParseOptions | None = None) -> None:
        super().__init__(options)
        self._principals: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}

    def sniff(self, head: bytes) -> int:
        try:
            return self._sniff(head)
        except Exception:  # sniff must never raise
            return 0

    def _sniff(self, head: bytes) -> int:
        hint = 0
        for n, raw_line in enumerate(head.split(b"\n")):
            if n >= 20:
                break
            line = raw_line.strip()
            if not line:
                continue
            _, body = _split_frame(line)
            if b'"type"' not in body or b'"request"' not in body:
                continue
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                hint = 40  # probably cut by the sniff window
                continue
            if (
                isinstance(obj, dict)
                and obj.get("type") in _RECORD_TYPES
                and isinstance(obj.get("request"), dict)
                and "time" in obj
            ):
                return 95
        return hint

    # -----------------------------------------------------------------------------------
    offset_extras = ("hashicorp_vault.request_offset",)

    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        return self._parse(stream, path, {}, final=True)

    def parse_range(self, stream: IO[bytes], path: str, carry: list[Any], base: int,
                    final: bool) -> Iterator[ParseOutcome]:
        """One byte range of a growing file: `carry` holds the requests still waiting for
        their response as [absolute offset, record JSON, syslog host], in table order."""
        pending: dict[str, _Pending] = {}
        out: list[ParseOutcome] = []
        for offset, body, host in carry:
            self._record(offset - base, body.encode(), path, pending, out)
            key = next(reversed(pending))
            pending[key] = pending[key]._replace(host=host)
        assert not out, "a carried request re-read as something other than pending"
        # A request still waiting is counted by the range that yields its outcome: the
        # range it came from hands it on, so every range's records_in meets its outcomes.
        tally = framing.tally_of(stream)
        tally.records += len(carry)
        yield from self._parse(stream, path, pending, final)
        carry[:] = [] if final else [[p.offset + base, bytes(p.raw).decode(), p.host]
                                     for p in pending.values()]
        tally.records -= len(carry)

    def _parse(self, stream: IO[bytes], path: str, pending: dict[str, _Pending],
               final: bool) -> Iterator[ParseOutcome]:
        out: list[ParseOutcome] = []
        if _NATIVE_STREAM is not None and not self.options.include_original \
                and MAX_PENDING == _NATIVE_MAX_PENDING:
            # The compiled fast path frames the lines as iter_lines does and handles the
            # common ones against the same `pending` table and `out` list; any other line
            # goes to self._record, as below.
            # It reads and frames the lines itself: they are counted as its bytes pass.
            read = framing.LineCounter(framing.tally_of(stream)).reader(stream.read)
            yield from _NATIVE_STREAM(read, framing.CHUNK, self.options.max_line_bytes,
                                      path, pending, out, self.options.vault_cluster,
                                      self._record)
        else:
            for offset, line in iter_lines(stream, self.options.max_line_bytes):
                self._record(offset, line, path, pending, out)
                if out:
                    yield from out
                    out.clear()
        while final and pending:
            key = next(iter(pending))
            yield self._unanswered(pending.pop(key), path)

    def _record(
        self, offset: int, line: bytes, path: str, pending: dict[str, _Pending],
        out: list[ParseOutcome],
    ) -> None:
        """Append the outcomes this record completes to `out` (a list, not a generator:
        one generator per record costs more than the rest of a skipped record). A record
        whose parsing raises is quarantined (record_failure); the file goes on."""
        try:
            self._parse_record(offset, line, path, pending, out)
        except Exception as exc:
            out.append(record_failure(exc, path, offset, line, DATASET))

    def _parse_record(
        self, offset: int, line: bytes, path: str, pending: dict[str, _Pending],
        out: list[ParseOutcome],
    ) -> None:
        if line.startswith(OVERLONG):
            out.append(too_long(path, offset, line, DATASET, self.options.max_line_bytes))
            return
        prefix, body = _split_frame(line)
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            reason, detail = json_error(str(exc))
            out.append(quarantine(reason, path, offset, line, DATASET, detail))
            return
        checked = self._validate(obj)
        if isinstance(checked, tuple):
            out.append(quarantine(checked[0], path, offset, line, DATASET, checked[1]))
            return
        rec: dict[str, Any] = obj
        rtype: str = rec["type"]
        req: dict[str, Any] = rec["request"]
        host = _syslog_host(prefix) if prefix else None
        kmip = rtype.startswith("kmip")
        plan: _Plan | None = None
        if not kmip:
            plan = self._plan_of(req)
            if plan is None:
                out.append(quarantine("missing_field", path, offset, line, DATASET,
                                 "request.path or request.operation missing"))
                return
            if plan.route.operation is None:
                out.append(Skipped(plan.route.skip or "not_key_related", path, offset))
                return
            if rtype == "request" and req.get("path") == "sys/audit/test" \
                    and "auth" not in rec:
                # Vault writes this synthetic record to validate a newly enabled device.
                out.append(Skipped("audit_device_test", path, offset))
                return
        elif self._kmip_op(rec)[1] is None:
            out.append(Skipped("kmip_handshake", path, offset))
            return
        pkey = self._pair_key(req)
        if rtype in ("request", "kmip-request"):
            prev = pending.pop(pkey, None)
            if prev is not None:  # the same id twice: the first one is never answered
                out.append(self._unanswered(prev, path))
            if len(pending) >= MAX_PENDING:
                oldest = next(iter(pending))
                out.append(self._unanswered(pending.pop(oldest), path))
            if len(body) > LARGE_REQUEST_BYTES:
                self._make_room(pending, len(body), path, out)
                pending[pkey] = _Pending(offset, None, checked, body, host, plan)
                return
            pending[pkey] = _Pending(offset, rec, checked, body, host, plan)
            return
        req_p = pending.pop(pkey, None)
        if req_p is not None:
            out.append(Skipped("paired_request", path, req_p.offset))
        out.append(self._event(rec=rec, req_p=req_p, ts=checked, offset=offset, raw=body,
                               path=path, host=host, plan=plan))

    @staticmethod
    def _validate(obj: Any) -> str | tuple[str, str]:
        """Normalized timestamp of a well-formed record, else (reason, detail)."""
        if not isinstance(obj, dict):
            return ("not_an_object", f"JSON {type(obj).__name__}, expected an object")
        rtype = obj.get("type")
        if rtype is None:
            return ("missing_field", "type")
        if not isinstance(rtype, str) or rtype not in _RECORD_TYPES:
            return ("unknown_shape", f"type={str(rtype)[:64]!r}")
        if not isinstance(obj.get("request"), dict):
            return ("missing_field", "request")
        t = obj.get("time")
        if not isinstance(t, str):
            return ("missing_field", "time") if t is None else ("bad_timestamp", repr(t)[:64])
        try:
            ts = normalize_iso(t)
        except (BadTimestamp, ValueError, OverflowError):
            return ("bad_timestamp", t[:64])
        return ts

    @staticmethod
    def _plan_of(req: dict[str, Any]) -> _Plan | None:
        p, op = req.get("path"), req.get("operation")
        if not isinstance(p, str) or not isinstance(op, str):
            return None
        mp, mt = req.get("mount_point"), req.get("mount_type")
        return _plan(p, op, mp if isinstance(mp, str) else None, mt if isinstance(mt, str)
                     else None)

    @staticmethod
    def _pair_key(req: dict[str, Any]) -> str:
        rid = req.get("id")
        if isinstance(rid, str) and rid:
            return rid
        try:
            return "sha:" + stable_id(orjson.dumps(req, option=orjson.OPT_SORT_KEYS))
        except (TypeError, orjson.JSONEncodeError):
            return "sha:" + stable_id(repr(req))

    def _make_room(self, pending: dict[str, _Pending], size: int, path: str,
                   out: list[ParseOutcome]) -> None:
        """Flush the oldest requests as unanswered until `size` more raw bytes fit in
        MAX_PENDING_BYTES (recounted here: both paths add and pair entries)."""
        held = sum(len(p.raw) for p in pending.values())
        while pending and held + size > MAX_PENDING_BYTES:
            p = pending.pop(next(iter(pending)))
            held -= len(p.raw)
            out.append(self._unanswered(p, path))

    # -----------------------------------------------------------------------------------
    def _unanswered(self, p: _Pending, path: str) -> KeyEvent:
        return self._event(rec=_record_of(p), req_p=None, ts=p.timestamp, offset=p.offset,
                           raw=p.raw, path=path, host=p.host, plan=p.plan)

    def _event(
        self,
        *,
        rec: dict[str, Any],
        req_p: _Pending | None,
        ts: str,
        offset: int,
        raw: bytes,
        path: str,
        host: str | None,
        plan: _Plan | None,
    ) -> KeyEvent:
        rtype: str = rec["type"]
        req: dict[str, Any] = rec["request"]
        auth = _d(rec.get("auth"))
        resp = _d(rec.get("response"))
        is_response = rtype in ("response", "kmip-response")
        if req_p is not None:
            ts = req_p.timestamp
            host = host or req_p.host
        cluster = self.options.vault_cluster
        ns_obj = _d(req.get("namespace"))
        ns_path = _s(ns_obj.get("path")) or ""
        extra: dict[str, Any] = {
            "hashicorp_vault.record_type": rtype,
            "hashicorp_vault.records": "pair" if req_p is not None
            else ("response_only" if is_response else "request_only"),
        }
        if req_p is not None:
            extra["hashicorp_vault.request_offset"] = req_p.offset
        ns = ns_path or _s(ns_obj.get("id"))
        if ns:
            extra["hashicorp_vault.namespace"] = ns
        if host:
            extra["hashicorp_vault.syslog_host"] = host

        # outcome
        err = _s(rec.get("error"))
        if err is None and req_p is not None:
            err = _s(_record_of(req_p).get("error"))
        outcome: str = "failure" if err else ("success" if is_response else "unknown")
        err_msg = error_message(err) if err else None

        fields: dict[str, Any] = {}
        rid = _s(req.get("id"))
        if rtype.startswith("kmip"):
            action, operation = self._kmip(rec=rec, req=req, auth=auth, resp=resp,
                                           cluster=cluster, ns_path=ns_path, fields=fields,
                                           extra=extra)
            if operation is None:
                operation = "admin_other"
            status = extra.pop("_kmip_status", None)
            if status == 0 and not err:
                outcome = "success"
            elif status in (1, 3):
                outcome = "failure"
                err_msg = err_msg or extra.get("hashicorp_vault.kmip_result_reason") \
                    or "operation failed"
            elif status == 2 and not err:
                outcome = "unknown"  # OperationPending
        else:
            assert plan is not None and plan.route.operation is not None  # checked on arrival
            action = req["operation"]
            operation = plan.route.operation
            self._normal(req=req, auth=auth, resp=resp, plan=plan, cluster=cluster,
                         ns_path=ns_path, fields=fields, extra=extra)

        event_id = stable_id(DATASET, rid, cluster) if rid else stable_id(DATASET, raw)
        remote = _s(req.get("remote_address"))
        if remote:
            fields["source_address"] = remote
            fields["source_ip"] = clean_ip(remote)
        if self.options.include_original:
            fields["original"] = raw.decode("utf-8", "replace")
        return new_event(
            timestamp=ts,
            event_id=event_id,
            dataset=DATASET,
            provider=plan.route.engine if plan is not None else "kmip",
            action=action,
            outcome=outcome,  # type: ignore[arg-type]
            operation=operation,
            log_file_path=path,
            log_offset=offset,
            error_message=err_msg,
            request_id=rid,
            extra=extra,
            **fields,
        )

    # -----------------------------------------------------------------------------------
    def _principal(self, auth: dict[str, Any], fields: dict[str, Any],
                   extra: dict[str, Any]) -> None:
        """Merge the principal of `auth` into fields / extra (cached per token identity)."""
        if not auth:
            return
        key: Any = (auth.get("accessor"), auth.get("entity_id"), auth.get("display_name"),
                    auth.get("token_type"), auth.get("policies"), auth.get("token_policies"))
        try:
            key = (*key[:4], *(tuple(v) if isinstance(v, list) else v for v in key[4:]))
            hit = self._principals.get(key)
        except TypeError:  # unhashable values in a malformed record: no caching
            key, hit = None, None
        if hit is None:
            hit = _principal_parts(auth)
            if key is not None:
                if len(self._principals) >= 4096:
                    self._principals.clear()
                self._principals[key] = hit
        fields.update(hit[0])
        extra.update(hit[1])

    def _normal(
        self,
        *,
        req: dict[str, Any],
        auth: dict[str, Any],
        resp: dict[str, Any],
        plan: _Plan,
        cluster: str,
        ns_path: str,
        fields: dict[str, Any],
        extra: dict[str, Any],
    ) -> None:
        r = plan.route
        extra.update(plan.extra)
        fields.update(plan.fields)
        if "hashicorp_vault.mount_type" not in extra:
            mt = resp.get("mount_type")
            if isinstance(mt, str) and mt:
                extra["hashicorp_vault.mount_type"] = mt
        dyn = plan.dynamic
        if dyn & _DYN_LOGIN:
            # The request carries no identity yet; the issued token's identity is in the
            # response. A failed login only names the user in the path.
            resp_auth = _d(resp.get("auth"))
            self._principal(resp_auth or auth, fields, extra)
            if "user_name" not in fields and r.qualifier:
                fields["user_name"] = r.qualifier
            if resp_auth:
                pols = _str_list(resp_auth.get("token_policies")) \
                    or _str_list(resp_auth.get("policies"))
                if pols:
                    extra["hashicorp_vault.new_token_policies"] = pols
            return
        self._principal(auth, fields, extra)
        if not dyn:
            if r.uid_suffix is not None and r.mount is not None:
                fields["key_uid"] = _uid(cluster, ns_path, r.mount, r.uid_suffix)
            return
        data = req.get("data")
        if not isinstance(data, dict):
            data = {}
        if dyn & _DYN_TOKEN:
            if data.get("no_parent") is True:
                extra["hashicorp_vault.orphan"] = True
            resp_auth = _d(resp.get("auth"))
            pols = _str_list(resp_auth.get("token_policies")) \
                or _str_list(resp_auth.get("policies"))
            if pols:
                extra["hashicorp_vault.new_token_policies"] = pols
                if "root" in pols:
                    extra["hashicorp_vault.root_token_created"] = True
            return
        if r.uid_suffix is not None and r.mount is not None:
            fields["key_uid"] = _uid(cluster, ns_path, r.mount, r.uid_suffix)
        version: Any = r.key_version
        if dyn & _DYN_TRANSIT:
            # The version used: requested in data, or reported back by the response.
            rdata = resp.get("data")
            for kv in (data.get("key_version"),
                       rdata.get("key_version") if isinstance(rdata, dict) else None):
                if version is None and isinstance(kv, int) and not isinstance(kv, bool):
                    version = str(kv)
            batch = data.get("batch_input")
            if isinstance(batch, list):
                extra["hashicorp_vault.batch_size"] = len(batch)
            if dyn & _DYN_KEYCFG:
                for name in _KEY_CONFIG_FIELDS:
                    v = data.get(name)
                    keep = isinstance(v, bool) or (
                        isinstance(v, int) and name.startswith("min")
                    ) or (isinstance(v, str) and name == "auto_rotate_period"
                          and not v.startswith("hmac-"))
                    if keep:
                        extra["hashicorp_vault.key_config." + name] = v
                spec = _s(data.get("type"))
                if spec and not spec.startswith("hmac-"):
                    fields["key_spec"] = spec
        elif dyn & _DYN_KV:
            rdata = _d(resp.get("data"))
            meta = _d(rdata.get("metadata")) if "metadata" in rdata else rdata
            v = meta.get("version")
            if isinstance(v, int) and not isinstance(v, bool):
                version = str(v)
            vers = data.get("versions")
            if isinstance(vers, list):
                ints = [x for x in vers if isinstance(x, int) and not isinstance(x, bool)]
                if ints:
                    extra["hashicorp_vault.kv_versions"] = ints
        if version is not None:
            fields["key_version"] = version

    def _kmip_op(self, rec: dict[str, Any]) -> tuple[str | None, str | None]:
        """(KMIP operation name, vocabulary operation or None for handshakes)."""
        req = _d(rec.get("request"))
        data = _d(req.get("data"))
        name = _s(req.get("kmip_operation")) or _s(data.get("kmip_operation"))
        if name is None:
            name = _kmip_op_name(_ttlv_find(data.get("kmip_request"), "Operation"))
        if name is None:
            resp = _d(rec.get("response"))
            name = _kmip_op_name(_ttlv_find(_d(resp.get("data")).get("kmip_response"),
                                            "Operation"))
        if name is None:
            return None, "admin_other"
        return name, _KMIP_VOCAB.get(name, "admin_other")

    def _kmip(
        self,
        *,
        rec: dict[str, Any],
        req: dict[str, Any],
        auth: dict[str, Any],
        resp: dict[str, Any],
        cluster: str,
        ns_path: str,
        fields: dict[str, Any],
        extra: dict[str, Any],
    ) -> tuple[str, str | None]:
        name, operation = self._kmip_op(rec)
        extra["hashicorp_vault.kmip"] = True
        data = _d(req.get("data"))
        meta = _d(auth.get("metadata"))
        scope = _s(req.get("scope")) or _s(data.get("scope")) or _s(meta.get("scope"))
        role = _s(req.get("role")) or _s(data.get("role")) or _s(meta.get("role"))
        if scope:
            extra["hashicorp_vault.kmip_scope"] = scope
        if role:
            extra["hashicorp_vault.kmip_role"] = role
        mount = (_s(req.get("mount_point")) or "kmip").strip("/") or "kmip"
        extra["hashicorp_vault.mount_point"] = mount
        extra["hashicorp_vault.mount_type"] = _s(req.get("mount_type")) or "kmip"
        extra["hashicorp_vault.endpoint"] = "kmip/" + (name or "unknown")
        kresp = _d(resp.get("data")).get("kmip_response")
        uid_val = _s(req.get("unique_identifier")) or _s(data.get("unique_identifier")) \
            or _s(_ttlv_find(data.get("kmip_request"), "UniqueIdentifier")) \
            or _s(_ttlv_find(kresp, "UniqueIdentifier"))
        status = _ttlv_int(_ttlv_find(kresp, "ResultStatus"))
        if status is not None:
            extra["_kmip_status"] = status
            reason = _ttlv_int(_ttlv_find(kresp, "ResultReason"))
            if reason is not None:
                extra["hashicorp_vault.kmip_result_reason"] = _KMIP_REASONS.get(
                    reason, f"0x{reason:08x}")
        count = _ttlv_int(_ttlv_find(data.get("kmip_request"), "BatchCount"))
        if count is not None and count > 1:
            extra["hashicorp_vault.batch_size"] = count
        self._principal(auth, fields, extra)
        serial = _s(req.get("client_certificate_serial_number"))
        if serial:
            extra["hashicorp_vault.client_certificate_serial"] = serial
            fields.setdefault("user_id", "cert:" + serial)
        if "user_name" not in fields and scope and role:
            fields["user_name"] = f"{scope}/{role}"
        if fields.get("principal_type") in (None, "token", "unauthenticated"):
            fields["principal_type"] = "kmip_client"  # authenticated by its TLS certificate
        fields["key_vault"] = mount
        if uid_val:
            suffix = f"scopes/{scope}/keys/{uid_val}" if scope else f"keys/{uid_val}"
            fields["key_uid"] = _uid(cluster, ns_path, mount, suffix)
            fields["key_name"] = uid_val
            fields["key_kind"] = "key"
            fields["key_provider"] = "vault_kmip"
        return name or "unknown", operation


# The compiled fast path (parsers/native/src/vault.rs), None without it. The pending-table
# bound is handed over once; a parser run with another MAX_PENDING stays in Python.
_NATIVE_STREAM: Any = getattr(NATIVE, "VaultStream", None)
_NATIVE_MAX_PENDING = MAX_PENDING
if _NATIVE_STREAM is not None:
    NATIVE.vault_init(_plan, Skipped, _Pending, MAX_PENDING,  # type: ignore[union-attr]
                      LARGE_REQUEST_BYTES)


__all__ = ["DATASET", "EXTRA_FIELDS", "MAX_PENDING", "Route", "VaultAuditParser",
           "error_message", "route"]
