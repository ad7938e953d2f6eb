"""`keytrail generate` / `keytrail eval` building blocks: layouts, determinism, measured quality."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import orjson
import pytest

from pipelines.evaluate import evaluate, format_eval_table, load_labels, run_in_memory
from pipelines.generate import generate


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    generate(str(out), seed=7, days=20, scale=0.3)
    return out


def test_native_layouts(dataset: Path) -> None:
    names = [str(p.relative_to(dataset)) for p in dataset.rglob("*") if p.is_file()]
    ct = [n for n in names if n.startswith("AWSLogs/111122223333/CloudTrail/us-east-1/")]
    assert ct and all(n.endswith(".json.gz") and "_CloudTrail_us-east-1_" in n for n in ct)
    assert "Records" in orjson.loads(gzip.decompress((dataset / ct[0]).read_bytes()))
    kv = [n for n in names if n.endswith("/PT1H.json") and n.startswith("insights-logs-")]
    activity = [n for n in names if n.startswith("insights-activity-logs/")]
    assert activity and orjson.loads((dataset / activity[0]).read_bytes().splitlines()[0])[
        "category"] == "Administrative"
    assert kv and all("resourceId=/SUBSCRIPTIONS/" in n and "/y=" in n and "/m=00/" in n
                      for n in kv)
    first = (dataset / kv[0]).read_bytes().splitlines()[0]
    assert orjson.loads(first)["category"] == "AuditEvent"
    assert any(n.startswith("vault-audit/") for n in names)
    assert any(n.startswith("cloudhsm/") for n in names)
    labels = load_labels(str(dataset))
    assert labels["benign_events"] > 0 and labels["scenarios"]


def test_generation_is_deterministic(dataset: Path, tmp_path: Path) -> None:
    generate(str(tmp_path / "a"), seed=7, days=20, scale=0.3)
    assert _digest(tmp_path / "a") == _digest(dataset)
    generate(str(tmp_path / "b"), seed=8, days=20, scale=0.3)
    assert _digest(tmp_path / "b") != _digest(dataset)


def test_detectors_meet_quality_targets(dataset: Path) -> None:
    alerts = run_in_memory(str(dataset))
    result = evaluate(str(dataset), alerts, load_labels(str(dataset)))
    t = result["totals"]
    table = format_eval_table(result)
    assert t["recall"] >= 0.95, table
    assert t["precision"] >= 0.9, table
    assert "TOTAL alerts" in table and "kms_denied_burst" in table
    # Re-running gives the same alert ids.
    again = run_in_memory(str(dataset))
    assert [a["keytrail.alert.id"] for a in again] == [a["keytrail.alert.id"] for a in alerts]


def test_eval_counts_unmatched_alerts_as_false_positives() -> None:
    labels = {"benign_events": 100_000, "scenarios": [
        {"scenario": "S1", "type": "x", "detectors": ["kms_denied_burst"], "also": [],
         "match": ["mallory"], "start": "2025-03-05T00:00:00Z", "end": "2025-03-05T01:00:00Z"}]}
    base = {"rule.id": "kms_denied_burst", "keytrail.key.uid": None,
            "keytrail.alert.first_seen": "2025-03-05T00:10:00.000Z",
            "keytrail.alert.last_seen": "2025-03-05T00:12:00.000Z",
            "keytrail.alert.explanation": "x"}
    hit = {**base, "keytrail.alert.entity": "arn:aws:iam::1:user/mallory", "user.id": "m"}
    miss = {**base, "keytrail.alert.entity": "arn:aws:iam::1:user/bob", "user.id": "b"}
    r = evaluate("d", [hit, miss], labels)
    assert r["totals"]["precision"] == 0.5 and r["totals"]["recall"] == 1.0
    assert r["totals"]["fp_per_100k_benign"] == 1.0


def test_combined_table_sums_detectors_over_seeds() -> None:
    from pipelines.evaluate import format_combined

    labels = {"benign_events": 50_000, "scenarios": [
        {"scenario": "S1", "type": "x", "detectors": ["kms_denied_burst"], "also": [],
         "match": ["mallory"], "start": "2025-03-05T00:00:00Z", "end": "2025-03-05T01:00:00Z"}]}
    base = {"rule.id": "kms_denied_burst", "keytrail.key.uid": None, "user.id": "x",
            "keytrail.alert.first_seen": "2025-03-05T00:10:00.000Z",
            "keytrail.alert.last_seen": "2025-03-05T00:12:00.000Z",
            "keytrail.alert.explanation": "x"}
    hit = {**base, "keytrail.alert.entity": "arn:aws:iam::1:user/mallory"}
    miss = {**base, "keytrail.alert.entity": "arn:aws:iam::1:user/bob"}
    text = format_combined([evaluate("a", [hit], labels), evaluate("b", [hit, miss], labels)])
    row = next(line for line in text.splitlines() if line.startswith("kms_denied_burst"))
    assert row.split() == ["kms_denied_burst", "3", "2", "1", "0.67", "2", "2", "1.00", "1.00"]
    assert "over 2 seeds (100000 benign events)" in text
