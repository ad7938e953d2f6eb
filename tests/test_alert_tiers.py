"""Signals vs alerts (detectors.alerting), exceptions, key classes, per-device HSM counters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboards.exports import ephemeral_summary, filter_inventory
from detectors.alerting import INCIDENT_RULE, AlertPolicy, exception_matches, two_tiers
from detectors.base import Bucket
from detectors.catalog import load_detectors, load_meta, validate_tuning
from detectors.hsm import HsmRebootCounterJump
from detectors.testing import run_detection
from parsers.base import ParseOptions
from parsers.detect import parse_bytes
from parsers.schema import KeyEvent
from pipelines.generate import hsm_block

T0 = 1_741_000_000.0  # 2025-03-03


def _signal(rule: str, day: int, principal: str | None = "arn:aws:iam::1:role/App",
            key: str | None = "arn:aws:kms:us-east-1:1:key/k1", risk: int = 47,
            entity: str | None = None) -> dict[str, Any]:
    ts = f"2025-03-{day:02d}T10:00:00.000Z"
    return {"keytrail.alert.id": f"{rule}-{day}-{principal}-{key}", "rule.id": rule,
            "rule.name": rule, "rule.version": 1, "rule.description": "",
            "event.severity_label": "medium", "keytrail.alert.severity": "medium",
            "keytrail.alert.risk_score": risk, "threat.technique": [],
            "keytrail.alert.entity": entity or f"{principal}|{key}", "keytrail.key.uid": key,
            "user.id": principal, "keytrail.alert.first_seen": ts, "keytrail.alert.last_seen": ts,
            "keytrail.alert.window_start": ts[:10] + "T00:00:00.000Z",
            "keytrail.alert.event_count": 1,
            "keytrail.alert.evidence": [{"event.id": f"e{day}{rule}", "@timestamp": ts,
                                         "log.file.path": "f", "log.offset": day}],
            "keytrail.alert.explanation": f"{rule} fired", "keytrail.alert.status": "open",
            "keytrail.alert.runbook": "", "keytrail.alert.details": {}}


def _metas(tuning: dict[str, Any] | None = None) -> dict[str, Any]:
    return {m.id: m for _, m in load_detectors(tuning)}


def _tiers(signals: list[dict[str, Any]], inventory: list[dict[str, Any]] | None = None,
           tuning: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    return two_tiers(signals, inventory or [], _metas(tuning), AlertPolicy())


def _disp(signals: list[dict[str, Any]]) -> list[str]:
    return [s["keytrail.signal.disposition"] for s in signals]


def test_a_one_off_detection_alerts_and_says_why_and_how_to_suppress() -> None:
    sig, alerts = _tiers([_signal("key_separation_of_duties", 10)])
    assert _disp(sig) == ["alert"]
    (a,) = alerts
    assert a["keytrail.alert.why"] and "exceptions" in a["keytrail.alert.suppress_with"]
    assert "arn:aws:iam::1:role/App" in a["keytrail.alert.suppress_with"]
    assert a["keytrail.alert.signals"][0]["rule.id"] == "key_separation_of_duties"


def test_the_same_identity_on_many_days_is_routine_but_stays_a_signal() -> None:
    sigs = [_signal("akv_backup_restore_recover", d) for d in (3, 4, 5, 6)]
    sig, alerts = _tiers(sigs)
    assert alerts == []
    assert _disp(sig) == ["routine"] * 4
    assert "4 distinct days" in sig[0]["keytrail.signal.reason"]
    # Another identity doing it once still alerts.
    sig, alerts = _tiers([*sigs, _signal("akv_backup_restore_recover", 6, principal="eve")])
    assert [a["user.id"] for a in alerts] == ["eve"]


def test_always_tier_rules_alert_even_when_recurring() -> None:
    sigs = [_signal("vault_audit_device_changed", d) for d in (3, 4, 5)]
    _, alerts = _tiers(sigs)
    assert len(alerts) == 3
    assert all("alert_tier: always" in a["keytrail.alert.why"] for a in alerts)


def test_low_risk_first_seen_after_learning_alerts_learned_does_not() -> None:
    iac = [_signal("kms_key_policy_changed", d, principal="arn:aws:iam::1:role/Terraform",
                   risk=21) for d in (1, 2)]
    new = _signal("kms_key_policy_changed", 20, principal="arn:aws:iam::1:user/mallory", risk=21)
    sig, alerts = _tiers([*iac, new])
    assert _disp(sig) == ["low_risk", "low_risk", "alert"]
    assert [a["user.id"] for a in alerts] == ["arn:aws:iam::1:user/mallory"]
    assert "first time" in alerts[0]["keytrail.alert.why"]


def test_low_risk_signals_of_different_rules_group_into_one_incident() -> None:
    learn = [_signal("kms_key_policy_changed", 1, principal="p", risk=21),
             _signal("akv_access_policy_changed", 1, principal="p", risk=21)]
    sig, alerts = _tiers(learn)
    assert _disp(sig) == ["low_risk", "low_risk"]
    (inc,) = alerts
    assert inc["rule.id"] == INCIDENT_RULE
    assert inc["keytrail.alert.rules"] == ["akv_access_policy_changed", "kms_key_policy_changed"]
    assert len(inc["keytrail.alert.signals"]) == 2 and inc["keytrail.alert.risk_score"] == 42
    assert len(inc["keytrail.alert.evidence"]) == 2


def test_ephemeral_keys_and_tickets_keep_signals_out_of_alerts() -> None:
    inv = [{"uid": "cloudhsm://c/524289", "key_class": "ephemeral", "lifetime_seconds": 4.0,
            "created_at": "2025-03-10T10:00:00.000Z", "created_by": "c/pay_app"}]
    s1 = _signal("key_separation_of_duties", 10, principal="c/pay_app",
                 key="cloudhsm://c/524289")
    s2 = _signal("key_new_principal", 11,
                 principal="arn:aws:sts::1:assumed-role/BreakGlass/CHG0045123-oncall")
    sig, alerts = _tiers([s1, s2], inv)
    assert _disp(sig) == ["ephemeral_key", "ticketed"]
    assert "destroyed 4 s later" in sig[0]["keytrail.signal.reason"]
    assert "CHG0045123" in sig[1]["keytrail.signal.reason"] and alerts == []


def test_exception_suppresses_keeps_evidence_and_expires() -> None:
    tuning = {"key_separation_of_duties": {"exceptions": [
        {"principal": "arn:aws:iam::1:role/App", "reason": "CHG1 key ceremony",
         "expires": "2025-03-15", "schedule": "mon-fri 09:00-17:00"}]}}
    before = _signal("key_separation_of_duties", 10)  # Monday 10:00 UTC, before expiry
    after = _signal("key_separation_of_duties", 20)   # after the expiry date
    sig, alerts = _tiers([before, after], tuning=tuning)
    assert _disp(sig) == ["exception", "alert"]
    assert "CHG1 key ceremony" in sig[0]["keytrail.signal.reason"]
    assert sig[0]["keytrail.alert.evidence"] == before["keytrail.alert.evidence"]
    assert len(alerts) == 1
    weekend = _signal("key_separation_of_duties", 8)  # a Saturday: outside the schedule
    assert not exception_matches(tuning["key_separation_of_duties"]["exceptions"][0], weekend)
    assert exception_matches(tuning["key_separation_of_duties"]["exceptions"][0], before)


@pytest.mark.parametrize(("exc", "needle"), [
    ({"principal": "x"}, "exceptions[0].reason: every exception needs a reason"),
    ({"principal": "x", "reason": "r", "expires": "next week"}, "expires: expected a date"),
    ({"principal": "x", "reason": "r", "schedule": "someday"}, "schedule: 'someday' is not"),
    ({"reason": "r"}, "name what it covers with principal, key or entity"),
    ({"principle": "x", "reason": "r"}, "exceptions[0].principle: unknown key; did you mean "
                                        "'principal'"),
])
def test_exception_validation_names_the_key_and_the_fix(exc: dict[str, Any], needle: str) -> None:
    errs = validate_tuning({"kms_key_policy_changed": {"exceptions": [exc]}})
    assert any(needle in e and e.startswith("detectors.kms_key_policy_changed.exceptions")
               for e in errs), errs


def test_alerting_settings_are_validated() -> None:
    assert validate_tuning({"alerting": {"min_alert_risk": 60}}) == []
    errs = validate_tuning({"alerting": {"min_alert_rsk": 60, "ticket_pattern": "("}})
    assert any("alerting.min_alert_rsk: unknown setting; did you mean 'min_alert_risk'" in e
               for e in errs)
    assert any("alerting.ticket_pattern: not a regular expression" in e for e in errs)


# --- key classes through the real parser ----------------------------------------------------

def _hsm_events(blocks: list[str]) -> list[KeyEvent]:
    data = ("\n\n".join(blocks) + "\n").encode()
    _, outcomes = parse_bytes(data, "cloudhsm/cluster-x/cloudhsm_audit.log", ParseOptions())
    return [o for o in outcomes if isinstance(o, KeyEvent)]


def _session(t: float, user: str, conn: int, ops: list[tuple[str, int, int, float]],
             seq: list[int]) -> list[str]:
    out = []

    def blk(dt: float, opcode: str, code: int, handle: int, **kw: Any) -> None:
        seq[0] += 1
        out.append(hsm_block(t + dt, seq[0], 0x21, opcode, code, handle, **kw))

    blk(0, "CN_LOGIN", 0xD, conn + 6, user=(user, "CN_CRYPTO_USER (1)"))
    for op, code, key, dt in ops:
        blk(dt, op, code, conn + 3, key=key)
    blk(ops[-1][3] + 1, "CN_LOGOUT", 0xE, conn, user=(user, "CN_CRYPTO_USER (1)"))
    return out


def test_session_keys_are_signals_and_long_lived_extraction_alerts() -> None:
    seq = [0]
    blocks = _session(T0 - 50 * 86400, "admin_cu", 0x7000010,
                      [("CN_GENERATE_KEY", 0x17, 262153, 1)], seq)
    for i in range(5):  # session keys: create, wrap, destroy within seconds
        blocks += _session(T0 + i * 86400, "pay_app", 0x7100000 + i * 0x10,
                           [("CN_GENERATE_KEY", 0x17, 524289 + i, 0.2),
                            ("CN_NIST_AES_WRAP_PAD", 0x1C, 524289 + i, 0.4),
                            ("CN_DESTROY_OBJECT", 0x11, 524289 + i, 3)], seq)
    blocks += _session(T0 + 9 * 86400, "mallory", 0x7200000,
                       [("CN_WRAP_KEY", 0x1A, 262153, 1)], seq)
    events = _hsm_events(blocks)
    dets = load_detectors()
    signals = run_detection(events, dets)
    alerts = run_detection(events, dets, tiers={})
    assert any("524289" in str(s["keytrail.key.uid"]) for s in signals)
    assert [(a["rule.id"], a["keytrail.key.uid"]) for a in alerts] == [
        ("hsm_key_extraction", "cloudhsm://default/262153")]


def test_inventory_summarises_session_keys_and_keeps_long_lived_exact() -> None:
    inv = [{"uid": f"cloudhsm://c/{h}", "key_class": "ephemeral", "lifetime_seconds": float(h % 7),
            "created_at": "2025-03-03T10:00:00.000Z", "created_by": "c/pay_app"}
           for h in range(10)] + [{"uid": "cloudhsm://c/kek", "key_class": "long_lived"}]
    (row,) = ephemeral_summary(inv)
    assert row == {"scope": "cloudhsm://c", "application": "c/pay_app", "day": "2025-03-03",
                   "count": 10, "lifetime_min_s": 0.0, "lifetime_median_s": 2.0,
                   "lifetime_max_s": 6.0}
    assert [r["uid"] for r in filter_inventory(inv, include_ephemeral=False)] == [
        "cloudhsm://c/kek"]
    assert len(filter_inventory(inv)) == 11


# --- per-device HSM counters ------------------------------------------------------------------

def _bucket(hour: int, *counters: int) -> Bucket:
    ts = f"2025-03-{3 + hour // 24:02d}T{hour % 24:02d}:00:00.000Z"
    return Bucket(start=ts, count=len(counters), first_seen=ts, last_seen=ts,
                  values={"reboot": {str(c) for c in counters}})


def test_interleaved_cluster_members_are_not_counter_jumps() -> None:
    det = HsmRebootCounterJump(**load_meta("hsm_reboot_counter_jump").params)
    # Two HSMs (0x21, 0x5c) in one stream; the second reboots once (+1) at hour 5.
    series = [_bucket(h, 0x21, 0x5C if h < 5 else 0x5D) for h in range(10)]
    assert list(det.evaluate("cluster", series)) == []
    # The first one then jumps by 3 (unlogged reboots): its old value never logs again.
    series += [_bucket(h, 0x24, 0x5D) for h in range(10, 14)]
    (f,) = det.evaluate("cluster", series)
    assert f.details["from"] == 0x21 and f.details["to"] == 0x24
    # A new cluster member appearing later is not a jump either.
    later = [_bucket(h, 0x24, 0x5D, 0x90) for h in (20, 21)]
    assert len(list(det.evaluate("cluster", [*series, *later]))) == 1


def test_a_single_hsm_going_backwards_is_reported() -> None:
    det = HsmRebootCounterJump(**load_meta("hsm_reboot_counter_jump").params)
    (f,) = det.evaluate("hsm-1", [_bucket(0, 0x30), _bucket(1, 0x30), _bucket(2, 0x2A)])
    assert "went backwards" in f.explanation


# --- `keytrail detectors test --config` ------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).resolve().parents[1])


def test_detectors_test_validates_exceptions_and_warns_when_expired(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("detectors:\n  akv_backup_restore_recover:\n    exceptions:\n"
                   "      - principle: 'c17d6f95-*'\n        expires: soon\n")
    r = _cli("detectors", "test", "akv_backup_restore_recover", "--config", str(bad))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "exceptions[0].principle: unknown key; did you mean 'principal'" in r.stderr
    assert "exceptions[0].expires: expected a date YYYY-MM-DD" in r.stderr
    old = tmp_path / "old.yaml"
    old.write_text("detectors:\n  akv_backup_restore_recover:\n    exceptions:\n"
                   "      - principal: 'c17d6f95-*'\n        expires: 2024-12-31\n"
                   "        reason: CHG0012345 nightly backup\n")
    r = _cli("detectors", "test", "akv_backup_restore_recover", "--config", str(old))
    assert r.returncode == 0, r.stderr
    assert "exceptions[0] expired on 2024-12-31 (CHG0012345 nightly backup)" in r.stdout


# --- peer groups (scikit-learn) ----------------------------------------------------------------

def _edge(principal: str, key: str, op: str, count: int, day: int) -> dict[str, Any]:
    ts = f"2025-03-{day:02d}T10:00:00.000Z"
    return {"principal": principal, "key_uid": key, "operation": op, "count": count,
            "failures": 0, "first_seen": ts, "last_seen": ts, "window_start": ts[:10] +
            "T00:00:00.000Z", "edge_id": f"{principal}{key}{op}{day}", "source_ips": []}


def test_recycled_runner_is_a_peer_and_a_lookalike_intruder_is_not() -> None:
    from detectors.lifecycle import CRYPTO_OPS, KeyNewPrincipal
    from detectors.peers import PeerGroups, usage_profiles

    orders, pay, arch = "vault://d/transit/keys/orders", "kms/payments", "kms/archive"
    edges = [_edge("runner-0", orders, "encrypt", 40, d) for d in range(1, 8)]
    edges += [_edge("app-orders", orders, "decrypt", 60, d) for d in range(1, 30)]
    edges += [_edge("runner-1", orders, "encrypt", 35, d) for d in range(22, 29)]
    for d in range(1, 30):
        edges += [_edge("payments-app", pay, "decrypt", 70, d),
                  _edge("payments-app", pay, "generate_data_key", 25, d),
                  _edge("payments-app", arch, "decrypt", 30, d)]
    edges.append(_edge("contractor", pay, "decrypt", 5, 25))
    groups = PeerGroups().fit(usage_profiles(edges, CRYPTO_OPS))
    assert [p for p, _ in groups.peers("runner-1")] == ["runner-0"]
    assert groups.peers("contractor") == []
    assert groups.shared_features("runner-1", "runner-0") == [f"encrypt on {orders}"]
    det = KeyNewPrincipal(**load_meta("key_new_principal").params)
    found = {f.principal: f for f in det.evaluate([], edges, "2025-03-30T00:00:00.000Z")}
    assert set(found) == {"runner-1", "contractor"}
    assert found["runner-1"].details["peer_of"] == "runner-0"
    assert "peer_of" not in found["contractor"].details
    sigs = [_signal("key_new_principal", 25, principal=p, key=f.key_uid) for p, f in
            sorted(found.items())]
    for s, (_, f) in zip(sigs, sorted(found.items()), strict=True):
        s["keytrail.alert.details"] = f.details
    classified, alerts = _tiers(sigs)
    assert _disp(classified) == ["alert", "routine"]
    assert "peer group of runner-0" in classified[1]["keytrail.signal.reason"]
    assert [a["user.id"] for a in alerts] == ["contractor"]


def test_a_newcomer_does_not_vouch_for_another_newcomer() -> None:
    from detectors.lifecycle import KeyNewPrincipal

    pay = "kms/payments"
    edges = [_edge("payments-app", pay, "decrypt", 70, d) for d in range(1, 30)]
    edges += [_edge("payments-app", pay, "generate_data_key", 25, d) for d in range(1, 30)]
    # One-off uses inside the baseline window, like the intruder's.
    edges += [_edge("breakglass", pay, "decrypt", 1, d) for d in (5, 12)]
    edges.append(_edge("contractor", pay, "decrypt", 5, 25))
    det = KeyNewPrincipal(**load_meta("key_new_principal").params)
    found = {f.principal: f for f in det.evaluate([], edges, "2025-03-30T00:00:00.000Z")}
    assert "peer_of" not in found["contractor"].details


def test_hsm_session_key_without_a_destroy_record_is_ephemeral_token_keys_are_not() -> None:
    from detectors.inventory import classify_lifetime

    created = {"ts": "2025-03-03T10:00:00.000Z", "user_id": "c/pay_app"}
    trans = [{"at": created["ts"], "to": "active", "by": "c/pay_app"}]
    kw: dict[str, Any] = {"provider": "cloudhsm", "principals": {"c/pay_app"},
                          "as_of": "2025-03-20T00:00:00.000Z"}
    cls, span = classify_lifetime(created, trans, "active", last_seen="2025-03-03T10:00:05.000Z",
                                  op_counts={"create": 1, "wrap": 1}, **kw)
    assert (cls, span) == ("ephemeral", 5.0)
    # Synchronised to the cluster (masked export): a token object, long-lived.
    assert classify_lifetime(created, trans, "active", last_seen="2025-03-03T10:00:05.000Z",
                             op_counts={"create": 1, "export": 1}, **kw)[0] == "long_lived"
    # Used again recently, or by someone else: long-lived.
    assert classify_lifetime(created, trans, "active", last_seen="2025-03-18T10:00:05.000Z",
                             op_counts={"create": 1}, **kw)[0] == "long_lived"
    kw["principals"] = {"c/pay_app", "c/other"}
    assert classify_lifetime(created, trans, "active", last_seen="2025-03-03T10:00:05.000Z",
                             op_counts={"create": 1}, **kw)[0] == "long_lived"


# --- explanations say what is known ------------------------------------------------------------

def _parsed(record: dict[str, Any], name: str) -> list[KeyEvent]:
    import orjson

    _, outcomes = parse_bytes(orjson.dumps(record) + b"\n", name, ParseOptions())
    return [o for o in outcomes if isinstance(o, KeyEvent)]


def _vault_write(body: dict[str, Any] | None) -> dict[str, Any]:
    rid = ("/subscriptions/5f2b8e1c-3d4a-4b6c-8e9f-0a1b2c3d4e5f/resourceGroups/rg/providers/"
           "Microsoft.KeyVault/vaults/contoso-prod-kv")
    props: dict[str, Any] = {"statusCode": "OK", "entity": rid}
    if body is not None:
        import json

        props["requestbody"] = json.dumps(body)
    return {"time": "2024-10-02T03:14:15.1234567Z", "resourceId": rid,
            "operationName": "Microsoft.KeyVault/vaults/write", "category": "Administrative",
            "resultType": "Success", "resultSignature": "Succeeded.OK",
            "callerIpAddress": "203.0.113.99", "correlationId": "c1",
            "identity": {"claims": {
                "http://schemas.microsoft.com/identity/claims/objectidentifier": "u-1"}},
            "properties": props}


def test_vault_write_says_what_changed_only_when_the_record_says_it() -> None:
    det = [(d, m) for d, m in load_detectors() if m.id == "akv_access_policy_changed"]
    grant = {"properties": {"accessPolicies": [{"objectId": "0f9e8d7c-6666", "permissions": {
        "secrets": ["get", "list"]}}]}}
    (a,) = run_detection(_parsed(_vault_write(grant), "activity.json"), det)
    assert "changed the access policy of vault contoso-prod-kv for 0f9e8d7c-6666" in a[
        "keytrail.alert.explanation"]
    assert "secrets:get" in a["keytrail.alert.explanation"]
    (b,) = run_detection(_parsed(_vault_write(None), "activity.json"), det)
    assert "changed the access policy" not in b["keytrail.alert.explanation"]
    assert "does not say what changed" in b["keytrail.alert.explanation"]


def test_unknown_key_is_described_by_what_the_record_says() -> None:
    from detectors.common import key_ref

    ev = KeyEvent(timestamp="2025-03-03T00:00:00.000Z", event_id="e", dataset="aws.cloudtrail",
                  provider="kms.amazonaws.com", action="PutKeyPolicy", outcome="success",
                  operation="update_policy", operation_class="policy",
                  log_file_path="f", log_offset=0, cloud_account_id="111122223333",
                  cloud_region="us-east-1")
    assert key_ref(ev) == ("a key the record does not identify (in account 111122223333 "
                           "region us-east-1)")
    assert "None" not in key_ref(ev)


def test_routine_reason_states_the_schedule() -> None:
    nightly = [_signal("akv_backup_restore_recover", d) for d in (3, 4, 5, 6, 7, 8, 9)]
    for s in nightly:
        for f in ("keytrail.alert.first_seen", "keytrail.alert.last_seen"):
            s[f] = s[f].replace("T10", "T01")
    allday = [_signal("hsm_key_extraction", d, principal="tok") for d in (3, 4, 5)]
    for s in allday:
        s["keytrail.alert.last_seen"] = s["keytrail.alert.last_seen"].replace("T10", "T23")
    sig, _ = _tiers([*nightly, *allday])
    assert "every day of the week, at 01:xx UTC" in sig[0]["keytrail.signal.reason"]
    assert "on Mon, Tue, Wed, throughout the day" in sig[-1]["keytrail.signal.reason"]


def test_alerts_cli_shows_signals_by_disposition_with_the_reason(tmp_path: Path) -> None:
    import orjson

    sig, alerts = _tiers([_signal("akv_backup_restore_recover", d) for d in (3, 4, 5)]
                         + [_signal("key_separation_of_duties", 9, principal="bob")])
    (tmp_path / "signals.ndjson").write_bytes(b"".join(orjson.dumps(s) + b"\n" for s in sig))
    (tmp_path / "alerts.ndjson").write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in alerts))
    r = _cli("alerts", "--out", str(tmp_path), "--signals", "routine")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("why: [routine]") == 3 and "bob" not in r.stdout
    r = _cli("alerts", "--out", str(tmp_path))
    assert "key_separation_of_duties" in r.stdout and "why: risk 47" in r.stdout
