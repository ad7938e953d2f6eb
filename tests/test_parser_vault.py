"""HashiCorp Vault / OpenBao audit parser: routing, pairing, outcomes, principals, framing,
quarantine, real public logs, format detection and property tests."""

from __future__ import annotations

import collections
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers import vault
from parsers.base import ParseError, ParseOptions, ParseOutcome, Quarantined, Skipped
from parsers.detect import detect, parse_bytes
from parsers.framing import iter_lines
from parsers.schema import OPERATIONS, KeyEvent
from parsers.vault import VaultAuditParser, error_message, route
from tests.golden_util import REAL_LOGS, SAMPLES

VAULT_SAMPLES = SAMPLES / "hashicorp_vault"
DENIED = "1 error occurred:\n\t* permission denied\n\n"

ALICE = {
    "client_token": "hmac-sha256:aa",
    "accessor": "hmac-sha256:acc-alice",
    "display_name": "userpass-alice",
    "policies": ["default", "kms-admin"],
    "token_policies": ["default", "kms-admin"],
    "entity_id": "ent-alice",
    "token_type": "service",
}
ROOT = {
    "client_token": "hmac-sha256:rr",
    "accessor": "hmac-sha256:acc-root",
    "display_name": "root",
    "policies": ["root"],
    "token_policies": ["root"],
    "token_type": "service",
}


def rec(
    rtype: str,
    path: str,
    op: str = "update",
    *,
    rid: str | None = "r1",
    time: str = "2025-03-01T10:00:00.123456Z",
    auth: dict[str, Any] | None = None,
    error: str | None = None,
    data: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
    **req_extra: Any,
) -> dict[str, Any]:
    req: dict[str, Any] = {"operation": op, "namespace": {"id": "root"}, "path": path,
                           "remote_address": "192.0.2.10", **req_extra}
    if rid is not None:
        req["id"] = rid
    if data is not None:
        req["data"] = data
    out: dict[str, Any] = {"time": time, "type": rtype, "auth": ALICE if auth is None else auth,
                           "request": req}
    if rtype == "response":
        out["response"] = response or {}
    if error is not None:
        out["error"] = error
    return out


def lines(*records: dict[str, Any] | str | bytes) -> bytes:
    out = []
    for r in records:
        if isinstance(r, bytes):
            out.append(r)
        elif isinstance(r, str):
            out.append(r.encode())
        else:
            out.append(orjson.dumps(r))
    return b"\n".join(out) + b"\n"


def parse(data: bytes, options: ParseOptions | None = None) -> list[ParseOutcome]:
    return list(VaultAuditParser(options).parse(io.BytesIO(data), "t.log"))


def events(outs: list[ParseOutcome]) -> list[KeyEvent]:
    return [o for o in outs if isinstance(o, KeyEvent)]


def one_event(*records: dict[str, Any] | str, options: ParseOptions | None = None) -> KeyEvent:
    evs = events(parse(lines(*records), options))
    assert len(evs) == 1, evs
    return evs[0]


def pair(path: str, op: str = "update", **kw: Any) -> list[dict[str, Any]]:
    req_kw = {k: v for k, v in kw.items() if k != "response"}
    return [rec("request", path, op, **req_kw), rec("response", path, op, **kw)]


# ------------------------------------------------------------------------------------------
# routing: path -> operation and key uid


@pytest.mark.parametrize(
    ("path", "op", "operation", "uid"),
    [
        ("transit/encrypt/payments", "update", "encrypt", "vault://default/transit/keys/payments"),
        ("transit/encrypt/payments", "create", "encrypt", "vault://default/transit/keys/payments"),
        ("transit/decrypt/payments", "update", "decrypt", "vault://default/transit/keys/payments"),
        ("transit/rewrap/payments", "update", "reencrypt", "vault://default/transit/keys/payments"),
        ("transit/datakey/plaintext/k1", "update", "generate_data_key",
         "vault://default/transit/keys/k1"),
        ("transit/datakey/wrapped/k1", "update", "generate_data_key",
         "vault://default/transit/keys/k1"),
        ("transit/sign/ed/sha2-256", "update", "sign", "vault://default/transit/keys/ed"),
        ("transit/verify/ed", "update", "verify", "vault://default/transit/keys/ed"),
        ("transit/hmac/k1/sha2-512", "update", "mac", "vault://default/transit/keys/k1"),
        ("transit/keys/k1", "update", "create", "vault://default/transit/keys/k1"),
        ("transit/keys/k1", "create", "create", "vault://default/transit/keys/k1"),
        ("transit/keys/k1", "read", "describe", "vault://default/transit/keys/k1"),
        ("transit/keys/k1", "delete", "destroy", "vault://default/transit/keys/k1"),
        ("transit/keys", "list", "list", None),
        ("transit/keys/k1/rotate", "update", "rotate", "vault://default/transit/keys/k1"),
        ("transit/keys/k1/config", "update", "update_policy", "vault://default/transit/keys/k1"),
        ("transit/keys/k1/trim", "update", "admin_other", "vault://default/transit/keys/k1"),
        ("transit/keys/k1/import", "update", "import", "vault://default/transit/keys/k1"),
        ("transit/export/encryption-key/k1", "read", "export",
         "vault://default/transit/keys/k1"),
        ("transit/export/hmac-key/k1/2", "read", "export", "vault://default/transit/keys/k1"),
        ("transit/export/public-key/ed", "read", "describe", "vault://default/transit/keys/ed"),
        ("transit/backup/k1", "read", "backup", "vault://default/transit/keys/k1"),
        ("transit/restore/k1", "update", "restore", "vault://default/transit/keys/k1"),
        ("transit/restore", "update", "restore", None),
        ("transit/cache-config", "update", "admin_other", None),
        # kv v2 and v1
        ("secret/data/app/db", "read", "export", "vault://default/secret/secrets/app/db"),
        ("secret/data/app/db", "create", "create", "vault://default/secret/secrets/app/db"),
        ("secret/data/app/db", "patch", "create", "vault://default/secret/secrets/app/db"),
        ("secret/data/app/db", "delete", "schedule_deletion",
         "vault://default/secret/secrets/app/db"),
        ("secret/delete/app/db", "update", "schedule_deletion",
         "vault://default/secret/secrets/app/db"),
        ("secret/undelete/app/db", "update", "cancel_deletion",
         "vault://default/secret/secrets/app/db"),
        ("secret/destroy/app/db", "update", "destroy", "vault://default/secret/secrets/app/db"),
        ("secret/metadata/app/db", "read", "describe", "vault://default/secret/secrets/app/db"),
        ("secret/metadata/app/db", "delete", "destroy", "vault://default/secret/secrets/app/db"),
        ("secret/metadata/app/", "list", "list", None),
        ("kv/my-secret-1", "read", "export", "vault://default/kv/secrets/my-secret-1"),
        ("kv/my-secret-1", "delete", "destroy", "vault://default/kv/secrets/my-secret-1"),
        # pki
        ("pki_int/issue/web", "update", "sign", "vault://default/pki_int/ca"),
        ("pki/root/generate/internal", "update", "create", "vault://default/pki/ca"),
        ("pki/root/sign-intermediate", "update", "sign", "vault://default/pki/ca"),
        ("pki/root/rotate/internal", "update", "rotate", "vault://default/pki/ca"),
        ("pki_int/intermediate/generate/internal", "update", "create",
         "vault://default/pki_int/ca"),
        ("pki_int/intermediate/set-signed", "update", "import", "vault://default/pki_int/ca"),
        ("pki/issuer/abc", "delete", "destroy", "vault://default/pki/issuers/abc"),
        ("pki/key/k9", "read", "describe", "vault://default/pki/keys/k9"),
        ("pki/roles/web", "update", "update_policy", None),
        # sys / auth: no key
        ("sys/policies/acl/admins", "update", "update_policy", None),
        ("sys/policy/admins", "delete", "update_policy", None),
        ("sys/audit/file", "update", "admin_other", None),
        ("sys/audit/file", "delete", "admin_other", None),
        ("sys/seal", "update", "admin_other", None),
        ("sys/unseal", "update", "admin_other", None),
        ("sys/rekey/init", "update", "admin_other", None),
        ("sys/generate-root/attempt", "update", "admin_other", None),
        ("sys/mounts/transit", "update", "admin_other", None),
        ("sys/auth/approle", "update", "admin_other", None),
        ("sys/leases/revoke-prefix/aws", "update", "admin_other", None),
        ("sys/mounts", "read", "describe", None),
        ("auth/userpass/login/alice", "update", "login", None),
        ("auth/approle/login", "update", "login", None),
        ("auth/team-a/k8s/login", "update", "login", None),
        ("auth/token/create", "update", "admin_other", None),
        ("auth/token/create-orphan", "update", "admin_other", None),
        ("auth/token/lookup-accessor", "update", "describe", None),
        ("auth/userpass/users/bob", "create", "admin_other", None),
    ],
)
def test_route_operation_and_uid(path: str, op: str, operation: str, uid: str | None) -> None:
    mount_type = {"transit": "transit", "secret": "kv", "kv": "kv", "pki": "pki",
                  "pki_int": "pki"}.get(path.split("/", maxsplit=1)[0])
    ev = one_event(*pair(path, op, mount_type=mount_type))
    assert ev.operation == operation
    assert ev.key_uid == uid
    assert ev.operation in OPERATIONS
    assert ev.action == op  # the vendor's verb verbatim


@pytest.mark.parametrize(
    ("path", "op", "reason"),
    [
        ("sys/health", "read", "health_or_ui_probe"),
        ("sys/seal-status", "read", "health_or_ui_probe"),
        ("sys/internal/ui/mounts/secret/x", "read", "health_or_ui_probe"),
        ("sys/capabilities-self", "update", "health_or_ui_probe"),
        ("sys/config/state/sanitized", "read", "health_or_ui_probe"),
        ("auth/token/lookup-self", "read", "token_self_service"),
        ("auth/token/renew-self", "update", "token_self_service"),
        ("transit/random/32", "update", "not_key_related"),
        ("transit/hash/sha2-256", "update", "not_key_related"),
        ("sys/tools/random", "update", "not_key_related"),
        ("cubbyhole/my-secret", "create", "not_key_related"),
        ("identity/entity/id/", "list", "not_key_related"),
        ("totp/code/my-key", "read", "not_key_related"),
        ("pki/ca/pem", "read", "not_key_related"),
        ("pki/roles/web", "help", "help_request"),
    ],
)
def test_out_of_scope_requests_are_skipped_both_records(path: str, op: str, reason: str) -> None:
    outs = parse(lines(*pair(path, op)))
    assert [o.reason for o in outs if isinstance(o, Skipped)] == [reason, reason]
    assert not events(outs)


def test_mount_inferred_without_mount_type_and_from_mount_point() -> None:
    # learn-vault-monitoring style: no mount_type, mount named after the engine.
    assert route("transit/encrypt/k", "create", None, None).operation == "encrypt"
    assert route("kv-v2/data/a/b", "read", None, None).uid_suffix == "secrets/a/b"
    assert route("pki_int/issue/r", "update", None, None).uid_suffix == "ca"
    # custom mount names: path shape decides
    r = route("crypto/encrypt/k", "update", None, None)
    assert (r.engine, r.mount, r.key_name) == ("transit", "crypto", "k")
    # mount_point (Vault >= 1.13) wins, even for nested mounts
    r = route("team/a/enc/keys/k/rotate", "update", "team/a/enc/", "transit")
    assert (r.mount, r.operation, r.key_name) == ("team/a/enc", "rotate", "k")
    # nested mount with only mount_type: split at the first engine verb
    r = route("team/a/transit/decrypt/k", "update", None, "transit")
    assert (r.mount, r.operation, r.key_name) == ("team/a/transit", "decrypt", "k")
    # totp keys are not transit keys even though the path says keys/
    assert route("totp/keys/my-key", "update", None, None).skip == "not_key_related"


def test_uid_uses_cluster_option_and_namespace_path() -> None:
    r = rec("response", "transit/encrypt/k", namespace={"id": "Xy1", "path": "finance/"})
    ev = one_event(r, options=ParseOptions(vault_cluster="prod-eu"))
    assert ev.key_uid == "vault://prod-eu/finance/transit/keys/k"
    assert ev.key_vault == "transit"
    assert ev.key_name == "k"
    assert ev.key_provider == "vault_transit"
    assert ev.key_kind == "key"
    assert ev.extra["hashicorp_vault.namespace"] == "finance/"


def test_kv_secret_fields() -> None:
    resp = {"data": {"data": {"password": "hmac-sha256:p"}, "metadata": {"version": 4}}}
    ev = one_event(*pair("secret/data/apps/db", "read", mount_type="kv", response=resp))
    assert (ev.key_kind, ev.key_provider, ev.key_version) == ("secret", "vault_kv", "4")
    assert ev.resource == "apps/db"


# ------------------------------------------------------------------------------------------
# pairing and outcomes


def test_pair_becomes_one_event_with_request_time_and_skip_emitted_first() -> None:
    req = rec("request", "transit/encrypt/k", time="2025-03-01T10:00:00.1Z")
    resp = rec("response", "transit/encrypt/k", time="2025-03-01T10:00:02.9Z")
    outs = parse(lines(req, resp))
    assert isinstance(outs[0], Skipped) and outs[0].reason == "paired_request"
    assert outs[0].offset == 0
    ev = outs[1]
    assert isinstance(ev, KeyEvent)
    assert ev.timestamp == "2025-03-01T10:00:00.100Z"
    assert ev.outcome == "success"
    assert ev.log_offset == len(orjson.dumps(req)) + 1
    assert ev.extra["hashicorp_vault.request_offset"] == 0
    assert ev.extra["hashicorp_vault.records"] == "pair"


def test_event_id_is_stable_across_pairing_framing_and_file_path() -> None:
    req = rec("request", "transit/encrypt/k")
    resp = rec("response", "transit/encrypt/k")
    paired = events(parse(lines(req, resp)))[0]
    alone = events(parse(lines(resp)))[0]
    framed = events(parse(lines(b"<134>1 2025-03-01T10:00:00Z vault-0 vault - - - "
                                + orjson.dumps(resp))))[0]
    other_path = events(list(VaultAuditParser().parse(io.BytesIO(lines(resp)), "x/y.log")))[0]
    assert paired.event_id == alone.event_id == framed.event_id == other_path.event_id
    other_cluster = one_event(resp, options=ParseOptions(vault_cluster="dr"))
    assert other_cluster.event_id != alone.event_id


def test_response_without_request_is_an_event() -> None:
    ev = one_event(rec("response", "transit/decrypt/k"))
    assert ev.outcome == "success"
    assert ev.extra["hashicorp_vault.records"] == "response_only"


def test_unanswered_request_is_flushed_at_end_with_unknown_outcome() -> None:
    outs = parse(lines(rec("request", "transit/encrypt/k", rid="lost"),
                       *pair("transit/decrypt/k", rid="ok")))
    assert [type(o).__name__ for o in outs] == ["Skipped", "KeyEvent", "KeyEvent"]
    lost = outs[2]
    assert isinstance(lost, KeyEvent)
    assert (lost.outcome, lost.operation, lost.log_offset) == ("unknown", "encrypt", 0)
    assert lost.extra["hashicorp_vault.records"] == "request_only"


def test_unanswered_request_with_error_is_a_failure() -> None:
    ev = one_event(rec("request", "transit/encrypt/k", error="permission denied"))
    assert (ev.outcome, ev.error_message) == ("failure", "permission denied")


def test_pending_table_is_bounded_and_flushes_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault, "MAX_PENDING", 3)
    reqs = [rec("request", f"transit/encrypt/k{i}", rid=f"id{i}") for i in range(5)]
    outs = parse(lines(*reqs, rec("response", "transit/encrypt/k4", rid="id4")))
    got = [(type(o).__name__, o.log_offset if isinstance(o, KeyEvent) else o.offset)
           for o in outs if not isinstance(o, Quarantined)]
    offs = [0]
    for r in reqs:
        offs.append(offs[-1] + len(orjson.dumps(r)) + 1)
    # id0 and id1 overflow in arrival order, id4 pairs, then id2 and id3 at end of file
    assert got == [("KeyEvent", offs[0]), ("KeyEvent", offs[1]), ("Skipped", offs[4]),
                   ("KeyEvent", offs[5]), ("KeyEvent", offs[2]), ("KeyEvent", offs[3])]
    assert [o.outcome for o in events(outs)] == ["unknown", "unknown", "success", "unknown",
                                                 "unknown"]


def test_duplicate_request_id_flushes_the_first() -> None:
    a = rec("request", "transit/encrypt/k", rid="dup")
    outs = parse(lines(a, a, rec("response", "transit/encrypt/k", rid="dup")))
    assert len(outs) == 3
    assert [o.outcome for o in events(outs)] == ["unknown", "success"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("permission denied", "permission denied"),
        (DENIED, "permission denied"),
        ("2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n",
         "permission denied; invalid token"),
        ("invalid credentials", "invalid credentials"),
    ],
)
def test_error_message_strips_multierror(raw: str, message: str) -> None:
    assert error_message(raw) == message
    ev = one_event(*pair("transit/decrypt/k", error=raw))
    assert (ev.outcome, ev.error_message) == ("failure", message)


def test_error_only_on_request_record_still_fails_the_pair() -> None:
    req = rec("request", "transit/decrypt/k", error="permission denied")
    ev = one_event(req, rec("response", "transit/decrypt/k"))
    assert ev.outcome == "failure"


# ------------------------------------------------------------------------------------------
# principals


def test_principal_entity_and_accessor() -> None:
    ev = one_event(rec("response", "transit/encrypt/k"))
    assert (ev.user_id, ev.user_name, ev.principal_type) == ("ent-alice", "userpass-alice",
                                                             "service")
    assert ev.session_id == "hmac-sha256:acc-alice"
    assert ev.source_ip == "192.0.2.10"
    no_entity = {k: v for k, v in ALICE.items() if k != "entity_id"}
    ev = one_event(rec("response", "transit/encrypt/k", auth=no_entity))
    assert ev.user_id == "token:hmac-sha256:acc-alice"  # accessor kept HMAC'd as logged


def test_root_token_is_flagged() -> None:
    ev = one_event(*pair("sys/policies/acl/payments", auth=ROOT))
    assert ev.principal_type == "root_token"
    assert ev.extra["hashicorp_vault.root_token"] is True
    assert ev.extra["hashicorp_vault.policy_name"] == "payments"
    assert ev.operation_class == "policy"
    assert ev.key_uid is None


def test_login_takes_identity_from_response_auth_and_failed_login_from_path() -> None:
    unauth = {"token_type": "default"}
    req = rec("request", "auth/approle/login", auth=unauth)
    resp = rec("response", "auth/approle/login", auth=ALICE, response={"auth": ALICE})
    ev = one_event(req, resp)
    assert (ev.operation, ev.user_id, ev.outcome) == ("login", "ent-alice", "success")
    assert ev.extra["hashicorp_vault.auth_method"] == "approle"
    bad = one_event(*pair("auth/userpass/login/mallory", auth=unauth,
                          error="invalid credentials"))
    assert (bad.outcome, bad.user_name, bad.user_id) == ("failure", "mallory", None)
    assert bad.principal_type == "unauthenticated"


def test_orphan_token_creation_is_flagged() -> None:
    resp = {"auth": {"policies": ["default", "root"], "token_policies": ["default", "root"]}}
    ev = one_event(*pair("auth/token/create-orphan", auth=ROOT, response=resp))
    assert ev.extra["hashicorp_vault.orphan"] is True
    assert ev.extra["hashicorp_vault.root_token_created"] is True
    ev = one_event(*pair("auth/token/create", data={"no_parent": True}))
    assert ev.extra["hashicorp_vault.orphan"] is True
    ev = one_event(*pair("auth/token/create", data={"no_parent": "hmac-sha256:x"}))
    assert "hashicorp_vault.orphan" not in ev.extra


def test_transit_key_config_booleans_are_kept() -> None:
    data = {"exportable": True, "deletion_allowed": True, "allow_plaintext_backup": False,
            "min_decryption_version": 2, "auto_rotate_period": "hmac-sha256:abc"}
    ev = one_event(*pair("transit/keys/k/config", data=data))
    assert ev.operation == "update_policy"
    assert ev.extra["hashicorp_vault.key_config.exportable"] is True
    assert ev.extra["hashicorp_vault.key_config.deletion_allowed"] is True
    assert ev.extra["hashicorp_vault.key_config.allow_plaintext_backup"] is False
    assert ev.extra["hashicorp_vault.key_config.min_decryption_version"] == 2
    assert "hashicorp_vault.key_config.auto_rotate_period" not in ev.extra  # HMAC'd: dropped


def test_hmac_values_are_never_unhashed_and_original_is_opt_in() -> None:
    r = rec("response", "transit/encrypt/k", data={"plaintext": "hmac-sha256:secret"})
    ev = one_event(r)
    assert ev.original is None
    assert "hmac-sha256:secret" not in json.dumps(ev.to_flat())
    ev = one_event(r, options=ParseOptions(include_original=True))
    assert ev.original == orjson.dumps(r).decode()


def test_all_extra_fields_are_declared() -> None:
    from parsers.schema import EXTRA_FIELDS

    declared = set(EXTRA_FIELDS) | set(vault.EXTRA_FIELDS)
    for sample in sorted(VAULT_SAMPLES.iterdir()):
        _, outs = parse_bytes(sample.read_bytes())
        for ev in events(outs):
            for k, v in ev.extra.items():
                assert k in declared, k
                assert isinstance(v, (str, int, bool, float, list)), (k, v)


# ------------------------------------------------------------------------------------------
# framing and timestamps


@pytest.mark.parametrize(
    ("prefix", "host"),
    [
        (b"<134>1 2024-05-01T10:00:00Z vault-0.example.com vault - - - ", "vault-0.example.com"),
        (b"<134>May  1 10:00:00 vault-1 vault[123]: ", "vault-1"),
        (b"May  1 10:00:00 vault-2 vault[12]: ", "vault-2"),
        (b"vault-audit-prefix: ", None),
    ],
)
def test_syslog_frame_and_prefix_are_stripped(prefix: bytes, host: str | None) -> None:
    outs = parse(prefix + orjson.dumps(rec("response", "transit/encrypt/k")) + b"\n")
    ev = events(outs)[0]
    assert ev.operation == "encrypt"
    assert ev.extra.get("hashicorp_vault.syslog_host") == host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T10:00:00Z", "2025-03-01T10:00:00.000Z"),
        ("2025-03-01T10:00:00.1Z", "2025-03-01T10:00:00.100Z"),
        ("2025-03-01T10:00:00.987654321Z", "2025-03-01T10:00:00.987Z"),
        ("2025-03-01T10:00:00.5-05:00", "2025-03-01T15:00:00.500Z"),
        ("2025-03-01T23:30:00+02:00", "2025-03-01T21:30:00.000Z"),
    ],
)
def test_timestamps_any_fraction_and_offset(value: str, expected: str) -> None:
    assert one_event(rec("response", "transit/encrypt/k", time=value)).timestamp == expected


# ------------------------------------------------------------------------------------------
# KMIP


def _kmip(op: int, status: int | None, uid: str | None = None, reason: int | None = None,
          rtype: str = "kmip-response", addr: str = "[2001:db8::10]:36778") -> dict[str, Any]:
    payload = [{"tag": "UniqueIdentifier", "type": "TextString", "value": uid}] if uid else []
    item: list[dict[str, Any]] = [{"tag": "Operation", "type": "Enumeration",
                                   "value": f"0x{op:08x}"}]
    if status is not None:
        item.append({"tag": "ResultStatus", "type": "Enumeration", "value": f"0x{status:08x}"})
    if reason is not None:
        item.append({"tag": "ResultReason", "type": "Enumeration", "value": f"0x{reason:08X}"})
    req = {"client_certificate_serial_number": "7931",
           "data": {"kmip_request": {"tag": "RequestMessage", "value": [
               {"tag": "BatchItem", "value": [item[0], {"tag": "RequestPayload",
                                                        "value": payload}]}]}},
           "namespace": {"id": "root"}, "remote_address": addr}
    out: dict[str, Any] = {"request": req, "time": "2026-05-20T13:50:00.314367448Z",
                           "type": rtype}
    if rtype == "kmip-response":
        out["response"] = {"data": {"kmip_response": {"tag": "ResponseMessage", "value": [
            {"tag": "BatchItem", "value": item}]}}}
    return out


def test_kmip_ttlv_operation_result_and_address() -> None:
    ev = one_event(_kmip(0x14, 1, uid="u-1", reason=0x0C))
    assert (ev.action, ev.operation, ev.outcome) == ("Destroy", "destroy", "failure")
    assert ev.error_message == "Permission Denied"
    assert ev.key_uid == "vault://default/kmip/keys/u-1"
    assert (ev.key_provider, ev.key_kind) == ("vault_kmip", "key")
    assert (ev.source_ip, ev.source_address) == ("2001:db8::10", "[2001:db8::10]:36778")
    assert (ev.user_id, ev.principal_type) == ("cert:7931", "kmip_client")
    ok = one_event(_kmip(0x0A, 0, uid="u-1", addr="192.168.0.10:36776"))
    assert (ok.operation, ok.outcome, ok.source_ip) == ("export", "success", "192.168.0.10")
    assert one_event(_kmip(0x0A, 2)).outcome == "unknown"  # OperationPending


def test_kmip_scope_and_pairing_without_request_id() -> None:
    a = _kmip(0x01, None, rtype="kmip-request")
    b = _kmip(0x01, 0)
    b["request"] = a["request"]  # the response echoes the request block; no request.id here
    b["response"]["data"]["kmip_response"]["value"][0]["value"].append(
        {"tag": "ResponsePayload", "value": [
            {"tag": "UniqueIdentifier", "type": "TextString", "value": "new-id"}]})
    a["auth"] = b["auth"] = {"metadata": {"scope": "finance", "role": "db"}}
    outs = parse(lines(a, b))
    assert [type(o).__name__ for o in outs] == ["Skipped", "KeyEvent"]
    ev = outs[1]
    assert isinstance(ev, KeyEvent)
    assert ev.key_uid == "vault://default/kmip/scopes/finance/keys/new-id"
    assert ev.user_name == "finance/db"
    handshake = parse(lines(_kmip(0x1E, 0)))
    assert [o.reason for o in handshake if isinstance(o, Skipped)] == ["kmip_handshake"]


# ------------------------------------------------------------------------------------------
# quarantine


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"time":"2025-03-01T10:00:00Z","type":"request","request":{"id":', "truncated_record"),
        (b"{not json}", "invalid_json"),
        (b"\xff\xfe garbage", "invalid_json"),
        (b'["request"]', "not_an_object"),
        (b"42", "not_an_object"),
        (b'{"time":"2025-03-01T10:00:00Z","request":{}}', "missing_field"),
        (b'{"time":"2025-03-01T10:00:00Z","type":"response"}', "missing_field"),
        (b'{"type":"response","request":{"path":"x","operation":"read"}}', "missing_field"),
        (b'{"time":"yesterday","type":"response","request":{}}', "bad_timestamp"),
        (b'{"time":1700000000,"type":"response","request":{}}', "bad_timestamp"),
        (b'{"time":"2025-13-45T10:00:00Z","type":"response","request":{}}', "bad_timestamp"),
        (b'{"time":"2025-03-01T10:00:00Z","type":"audit","request":{}}', "unknown_shape"),
        (b'{"time":"2025-03-01T10:00:00Z","type":"request","request":{"id":"x"}}',
         "missing_field"),
    ],
)
def test_quarantine_reasons(line: bytes, reason: str) -> None:
    outs = parse(line + b"\n")
    assert len(outs) == 1
    q = outs[0]
    assert isinstance(q, Quarantined)
    assert (q.reason, q.dataset, q.offset) == (reason, "hashicorp_vault.audit", 0)


def test_overlong_line_is_quarantined() -> None:
    big = orjson.dumps(rec("response", "transit/encrypt/k", data={"x": "a" * 5000}))
    outs = parse(big + b"\n" + orjson.dumps(rec("response", "transit/encrypt/k", rid="r2")),
                 ParseOptions(max_line_bytes=1000))
    assert [type(o).__name__ for o in outs] == ["Quarantined", "KeyEvent"]
    assert isinstance(outs[0], Quarantined) and outs[0].reason == "line_too_long"


# ------------------------------------------------------------------------------------------
# real public logs: full accounting, exact counts

REAL_VAULT = REAL_LOGS / "vault"
# file -> (records, events, skipped by reason, quarantined by reason)
REAL_EXPECTED: dict[str, tuple[int, int, dict[str, int], dict[str, int]]] = {
    "datadog-integrations-core-vault.log": (1, 1, {}, {}),
    "elastic-integrations-hashicorp_vault-test-audit.log": (
        13, 5, {"health_or_ui_probe": 2, "paired_request": 3, "help_request": 1,
                "kmip_handshake": 2}, {}),
    "elastic-integrations-hashicorp_vault-test-faked-all-fields.log": (
        4, 1, {"token_self_service": 2, "paired_request": 1}, {}),
    "hashicorp-education-learn-vault-monitoring.log": (
        1397, 527, {"paired_request": 526, "not_key_related": 64, "health_or_ui_probe": 274,
                    "token_self_service": 6}, {}),
    "nula-white-gitops.log": (
        160, 32, {"audit_device_test": 1, "health_or_ui_probe": 82, "paired_request": 31,
                  "token_self_service": 8, "not_key_related": 6}, {}),
    "openbao-2.5.5-transit-keys-read-denied.log": (1, 1, {}, {}),
    "samgabrail-vault-k8s-clients.log": (
        27, 7, {"token_self_service": 2, "health_or_ui_probe": 10, "paired_request": 6,
                "not_key_related": 2}, {}),
    "vault-doc-excerpt-awx-approle.log": (2, 1, {"paired_request": 1}, {}),
    "vault-doc-excerpt-gke-1.9.2-transit-decrypt-denied.log": (1, 1, {}, {}),
}


def _real(name: str) -> list[ParseOutcome]:
    path = REAL_VAULT / name
    if not path.exists():
        pytest.skip(f"../shared/real_logs not present: {path}")
    dataset, outs = parse_bytes(path.read_bytes(), name)
    assert dataset == "hashicorp_vault.audit"
    return outs


@pytest.mark.parametrize("name", sorted(REAL_EXPECTED))
def test_real_logs_full_accounting(name: str) -> None:
    outs = _real(name)
    n_records, n_events, skipped, quarantined = REAL_EXPECTED[name]
    data = (REAL_VAULT / name).read_bytes()
    assert len(outs) == n_records == sum(1 for ln in data.split(b"\n") if ln.strip())
    assert len(events(outs)) == n_events
    assert dict(collections.Counter(o.reason for o in outs if isinstance(o, Skipped))) == skipped
    assert dict(collections.Counter(o.reason for o in outs
                                    if isinstance(o, Quarantined))) == quarantined


def test_real_logs_every_file_is_covered() -> None:
    if not REAL_VAULT.exists():
        pytest.skip(f"../shared/real_logs not present: {REAL_VAULT}")
    assert {p.name for p in REAL_VAULT.iterdir() if p.is_file()} == set(REAL_EXPECTED)


def test_real_learn_vault_monitoring_semantics() -> None:
    evs = events(_real("hashicorp-education-learn-vault-monitoring.log"))
    enc = [e for e in evs if e.operation == "encrypt"]
    assert len(enc) == 100
    assert {e.key_uid for e in enc} >= {"vault://default/transit/keys/my-key-1",
                                        "vault://default/transit/keys/my-key-100"}
    first = evs[0]  # the audit device's own enable: response only, logged by the new device
    assert (first.extra["hashicorp_vault.path"], first.extra["hashicorp_vault.records"]) == (
        "sys/audit/file", "response_only")
    assert first.principal_type == "root_token"
    assert sum(e.operation == "login" for e in evs) == 231


def test_real_nula_white_sorted_keys_and_multi_errors() -> None:
    evs = events(_real("nula-white-gitops.log"))
    msgs = {e.error_message for e in evs if e.outcome == "failure"}
    assert "invalid credentials" in msgs
    logins = [e for e in evs if e.operation == "login"]
    assert len(logins) == 6 and all(e.outcome == "failure" for e in logins)
    kv = [e for e in evs if e.key_provider == "vault_kv"]
    assert {e.key_uid for e in kv} == {"vault://default/secret/secrets/prism/git/github",
                                       "vault://default/secret/secrets/prism/db/neo4j"}
    assert all(e.extra["hashicorp_vault.mount_point"] == "secret" for e in kv)


def test_real_denied_transit_records() -> None:
    gke = events(_real("vault-doc-excerpt-gke-1.9.2-transit-decrypt-denied.log"))[0]
    assert (gke.operation, gke.outcome, gke.error_message) == ("decrypt", "failure",
                                                               "permission denied")
    assert gke.key_uid == "vault://default/transit/keys/test1"
    assert gke.user_id == "fb3e9a7d-e8a3-96da-d1e0-348622d71a3a"
    bao = events(_real("openbao-2.5.5-transit-keys-read-denied.log"))[0]
    assert (bao.operation, bao.outcome) == ("describe", "failure")
    assert bao.key_uid == "vault://default/transit/keys/ipe-cpf"


def test_real_kmip_and_faked_fields() -> None:
    evs = events(_real("elastic-integrations-hashicorp_vault-test-audit.log"))
    kmip = [e for e in evs if e.key_vault == "kmip"]
    assert [(e.action, e.outcome, e.source_ip) for e in kmip] == [
        ("Get", "failure", "192.168.0.10"), ("Get", "unknown", "2001:db8::10")]
    faked = events(_real("elastic-integrations-hashicorp_vault-test-faked-all-fields.log"))[0]
    assert faked.principal_type == "root_token"  # policies has root, token_policies does not
    assert faked.session_id == "bar"  # the faked, unhashed accessor is kept as logged


@pytest.mark.parametrize("family", ["cloudtrail", "hsm", "azure_keyvault"])
def test_other_families_real_files_never_break_the_vault_parser(family: str) -> None:
    root = REAL_LOGS / family
    if not root.exists():
        pytest.skip(f"../shared/real_logs not present: {root}")
    for p in sorted(root.iterdir()):
        if p.suffix == ".gz" or not p.is_file():
            continue
        data = p.read_bytes()
        outs = parse(data)
        assert len(outs) == len(list(iter_lines(io.BytesIO(data), 1 << 20)))
        assert not events(outs), p.name


# ------------------------------------------------------------------------------------------
# format detection


@pytest.mark.parametrize("sample", sorted(VAULT_SAMPLES.iterdir()), ids=lambda p: p.name)
def test_detection_picks_vault_for_each_sample(sample: Path) -> None:
    picked = detect(sample.read_bytes())
    assert picked is not None and picked.id == "hashicorp_vault_audit"


def test_detection_sniff_scores() -> None:
    p = VaultAuditParser()
    assert p.sniff(lines(rec("request", "transit/encrypt/k"))) >= 90
    assert p.sniff(b"<134>May  1 10:00:00 h vault[1]: "
                   + orjson.dumps(rec("response", "x/y"))) >= 90
    assert p.sniff(b'{"Records":[{"eventVersion":"1.08"}]}') == 0
    assert p.sniff(b"") == 0
    assert p.sniff(b"\x00\xff" * 100) == 0


def _other_family_samples() -> Iterator[Path]:
    for d in sorted(SAMPLES.iterdir()) if SAMPLES.exists() else []:
        if d.is_dir() and d.name != "hashicorp_vault":
            yield from sorted(p for p in d.rglob("*") if p.is_file() and p.name != "README.md")


def test_detection_does_not_pick_vault_for_other_families() -> None:
    others = list(_other_family_samples())
    if not others:
        pytest.skip("no other families' sample_logs yet")
    p = VaultAuditParser()
    for sample in others:
        data = sample.read_bytes()
        if sample.suffix == ".gz":
            import gzip

            data = gzip.decompress(data)
        assert p.sniff(data[: 64 * 1024]) == 0, sample


# ------------------------------------------------------------------------------------------
# properties: never raise, one outcome per record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False,
                                                                            allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
record_like = st.fixed_dictionaries(
    {
        "time": st.sampled_from(["2025-03-01T10:00:00Z", "2025-03-01T10:00:00.5-05:00", "x"])
        | json_values,
        "type": st.sampled_from(["request", "response", "kmip-request", "kmip-response"]),
        "request": st.fixed_dictionaries(
            {},
            optional={
                "id": st.sampled_from(["a", "b", ""]) | json_values,
                "path": st.sampled_from(["transit/encrypt/k", "sys/audit/file", "auth/token/create",
                                         "secret/data/x", "pki/issue/r", "a//b/", "/", ""])
                | json_values,
                "operation": st.sampled_from(["read", "update", "delete", "list", "help"])
                | json_values,
                "mount_point": json_values,
                "mount_type": st.sampled_from(["transit", "kv", "pki", "kmip"]) | json_values,
                "namespace": json_values,
                "data": json_values,
                "remote_address": st.sampled_from(["192.0.2.1", "[::1]:5", "x"]) | json_values,
            },
        ),
    },
    optional={"auth": json_values, "response": json_values, "error": json_values},
)


def _check_accounting(data: bytes) -> None:
    parser = VaultAuditParser()
    parser.sniff(data)
    try:
        outs = list(parser.parse(io.BytesIO(data), "p.log"))
    except ParseError:
        return
    assert len(outs) == len(list(iter_lines(io.BytesIO(data), parser.options.max_line_bytes)))
    for o in outs:
        if isinstance(o, KeyEvent):
            assert o.operation in OPERATIONS
            assert o.outcome in ("success", "failure", "unknown")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_property_arbitrary_bytes(data: bytes) -> None:
    _check_accounting(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=6))
def test_property_arbitrary_json_lines(values: list[Any]) -> None:
    _check_accounting(b"\n".join(orjson.dumps(v) for v in values))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_like, max_size=6), st.sampled_from([b"", b"<134>1 t h vault - - - "]))
def test_property_record_shaped_json(values: list[dict[str, Any]], prefix: bytes) -> None:
    _check_accounting(b"\n".join(prefix + orjson.dumps(v) for v in values))


def test_pending_table_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large unanswered requests are flushed as explicit events once their raw bytes
    exceed MAX_PENDING_BYTES, long before MAX_PENDING entries (issue 15 item 8)."""
    monkeypatch.setattr(vault, "MAX_PENDING_BYTES", 200_000)
    pad = "A" * 50_000  # each request ~50 kB > LARGE_REQUEST_BYTES
    reqs = [rec("request", f"transit/encrypt/k{i}", rid=f"id{i}", data={"plaintext": pad})
            for i in range(12)]
    data = lines(*reqs, rec("response", "transit/encrypt/k11", rid="id11"))
    outs = parse(data)
    evs = events(outs)
    assert len(evs) == 12  # nothing dropped: 11 unanswered + 1 paired
    first_skip = next(i for i, o in enumerate(outs) if isinstance(o, Skipped))
    # at most ~4 requests fit in 200 kB: the others were flushed before the response
    flushed_early = [e for e in outs[:first_skip] if isinstance(e, KeyEvent)]
    assert len(flushed_early) >= 7
    assert all(e.outcome == "unknown" for e in flushed_early)
    assert [e.log_offset for e in flushed_early] == sorted(e.log_offset for e in flushed_early)
