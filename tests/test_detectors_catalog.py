"""Catalog test: every detector has valid metadata and labelled cases that pass through the
real parsers; tuning is validated with actionable messages and honoured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detectors.base import SEVERITIES, DetectorError, Finding, make_alert
from detectors.catalog import (
    REGISTRY,
    RULES_DIR,
    DetectorRegistry,
    accept,
    all_ids,
    load_detectors,
    load_meta,
    validate_tuning,
)
from detectors.cli_support import list_table, run_cases, show
from detectors.testing import run_cases as detector_cases

IDS = all_ids()


def test_every_class_has_a_yaml_and_every_yaml_a_class() -> None:
    files = {p.stem for p in Path(RULES_DIR).glob("*.yaml")}
    assert files == set(IDS)


def test_duplicate_id_is_an_error() -> None:
    reg = DetectorRegistry()
    cls = REGISTRY.classes["kms_denied_burst"]
    reg.register(cls)
    with pytest.raises(DetectorError, match="duplicate detector id"):
        reg.register(cls)


@pytest.mark.parametrize("det_id", IDS)
def test_metadata_is_valid(det_id: str) -> None:
    m = load_meta(det_id)
    assert m.id == det_id
    assert m.severity in SEVERITIES
    assert 0 <= m.risk_score <= 100
    assert m.techniques
    for t in m.techniques:
        assert re.fullmatch(r"T\d{4}(\.\d{3})?", t["id"]), t
        assert t["name"] and t["tactic"]
    assert m.datasets and m.runbook and m.false_positives and m.description
    # Default params in the YAML are exactly the detector's parameters.
    assert set(m.params) == set(REGISTRY.classes[det_id].default_params())


@pytest.mark.parametrize("det_id", IDS)
def test_cases_pass(det_id: str) -> None:
    meta = load_meta(det_id)
    expects = [c.get("expect") for c in meta.cases]
    assert "alert" in expects and "no_alert" in expects, "needs a positive and a negative case"
    for r in detector_cases(det_id):
        assert r.ok, f"{det_id}: {r.name}: {r.message}"


def test_positive_alerts_carry_explanation_evidence_and_technique() -> None:
    for det_id in ("kms_denied_burst", "vault_root_token_used", "hsm_key_extraction"):
        r = next(r for r in detector_cases(det_id) if r.expected == "alert")
        a = r.alerts[0]
        assert a["rule.id"] == det_id
        assert len(a["keytrail.alert.explanation"]) > 40
        assert a["keytrail.alert.evidence"] and a["keytrail.alert.evidence"][0]["log.file.path"]
        assert a["threat.technique"][0]["id"].startswith("T")


def test_alert_ids_are_deterministic() -> None:
    a = [x["keytrail.alert.id"] for x in detector_cases("kms_denied_burst")[0].alerts]
    b = [x["keytrail.alert.id"] for x in detector_cases("kms_denied_burst")[0].alerts]
    assert a == b and a


# --- tuning ---------------------------------------------------------------------------------

def test_validation_names_key_and_fix() -> None:
    errs = validate_tuning({
        "kms_denied_burst": {"params": {"threshold": "ten", "windw_seconds": 60}},
        "kms_denied_brust": {"enabled": False},
        "vault_root_token_used": {"severity": "urgent", "risk_score": 200},
        "akv_burst_retrieval": {"allow": {"principal": ["x"]}, "suppress": [{"field": "user.idd",
                                                                            "value": "a"}]},
        "disabled": ["key_dormnt"],
    })
    text = "\n".join(errs)
    assert ("detectors.kms_denied_burst.params.threshold: expected a positive integer, got "
            "'ten'; set e.g. threshold: 10") in errs
    assert "detectors.kms_denied_burst.params.windw_seconds: unknown parameter; did you mean " \
           "'window_seconds'?" in errs
    assert "detectors.kms_denied_brust: unknown detector id 'kms_denied_brust'; did you mean " \
           "'kms_denied_burst'?" in errs
    assert "detectors.vault_root_token_used.severity" in text
    assert "detectors.vault_root_token_used.risk_score" in text
    assert "detectors.akv_burst_retrieval.allow.principal: unknown allow-list; did you mean " \
           "'principals'?" in errs
    assert "detectors.akv_burst_retrieval.suppress[0].field" in text
    assert "detectors.disabled[0]: unknown detector id 'key_dormnt'; did you mean 'key_dormant'?" \
        in errs
    assert len(errs) == 8


def test_valid_tuning_has_no_errors() -> None:
    assert validate_tuning({
        "kms_denied_burst": {"params": {"threshold": 25}, "severity": "high",
                             "allow": {"principals": ["arn:aws:iam::*:role/Batch*"],
                                       "source_ips": ["10.0.0.0/8"]}},
        "disabled": ["key_dormant"],
    }) == []


def test_load_detectors_rejects_bad_tuning() -> None:
    with pytest.raises(DetectorError, match="threshold"):
        load_detectors({"kms_denied_burst": {"params": {"threshold": -1}}})


def test_disable_and_enabled_false() -> None:
    ids = {m.id for _, m in load_detectors({"disabled": ["key_dormant"],
                                            "kms_denied_burst": {"enabled": False}})}
    assert "key_dormant" not in ids and "kms_denied_burst" not in ids
    assert len(ids) == len(IDS) - 2


def _tuned(det_id: str, tune: dict) -> tuple:  # type: ignore[type-arg]
    return next((d, m) for d, m in load_detectors({det_id: tune}) if m.id == det_id)


def test_params_override_reaches_the_detector() -> None:
    det, meta = _tuned("kms_denied_burst", {"params": {"threshold": 25}})
    assert det.params["threshold"] == 25 and meta.params["threshold"] == 25
    assert det.params["window_seconds"] == 300


def test_severity_override_wins_over_finding_severity() -> None:
    _, meta = _tuned("kms_key_disabled_or_deletion_scheduled", {"severity": "low",
                                                                "risk_score": 5})
    f = Finding("k", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z", "x",
                severity="high", risk_score=73)
    a = make_alert(meta, f)
    assert a["keytrail.alert.severity"] == "low" and a["keytrail.alert.risk_score"] == 5


def test_allow_list_and_suppression() -> None:
    det, meta = _tuned("kms_denied_burst", {
        "allow": {"principals": ["arn:aws:iam::*:role/Batch*"], "source_ips": ["10.0.0.0/8"]},
        "suppress": [{"field": "details.error_codes", "value": "DisabledException"}]})
    f = Finding("e", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z", "x",
                principal="arn:aws:iam::111122223333:role/BatchJobs")
    assert not accept(det, meta, f)
    f.principal = "arn:aws:iam::111122223333:user/mallory"
    assert accept(det, meta, f)
    f.details = {"source_ips": ["10.1.2.3", "10.9.9.9"]}
    assert not accept(det, meta, f)
    f.details = {"source_ips": ["10.1.2.3", "203.0.113.5"]}
    assert accept(det, meta, f)
    f.details = {"error_codes": ["DisabledException"]}
    assert not accept(det, meta, f)
    f.details = {"error_codes": ["DisabledException", "AccessDeniedException"]}
    assert accept(det, meta, f)


def test_allow_list_suppresses_a_real_case() -> None:
    from dataclasses import replace

    from detectors.testing import parse_case, run_detection

    meta = load_meta("kms_denied_burst")
    events, _ = parse_case(meta.cases[0], "t")
    det, tuned = _tuned("kms_denied_burst", {"allow": {"principals": ["*:user/mallory"]}})
    assert run_detection(events, [(det, tuned)]) == []
    assert len(run_detection(events, [(det, replace(tuned, allow={}))])) == 1


def test_cli_text() -> None:
    table = list_table()
    assert "kms_denied_burst" in table and f"{len(IDS)} detectors" in table
    text = show("vault_root_token_used")
    assert "Runbook:" in text and "T1078" in text
    ok, report = run_cases("hsm_login_failures")
    assert ok and "2/2 cases passed" in report
    with pytest.raises(DetectorError, match="did you mean 'key_dormant'"):
        show("key_dormnt")
