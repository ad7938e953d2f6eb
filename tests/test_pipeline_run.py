"""`keytrail run` end to end on the in-process runner: outputs, accounting, determinism."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.run import run_batch
from pipelines.store import read_events
from tests.golden_util import REAL_LOGS, REPO, SAMPLES

OUTPUTS = ("inventory.parquet", "inventory.json", "edges.parquet", "resource_edges.parquet",
           "alerts.parquet", "alerts.ndjson", "quarantine.ndjson", "run_summary.json",
           "graph.json", "graph.graphml", "report.html")


def _digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not any(SAMPLES.rglob("*.*")):
        pytest.skip("sample_logs/ is empty")
    out = tmp_path_factory.mktemp("run1")
    summary = run_batch([str(SAMPLES)], str(out))
    return out, summary


def test_default_run_writes_every_output(sample_run: tuple[Path, dict]) -> None:
    out, summary = sample_run
    for name in OUTPUTS:
        assert (out / name).is_file(), f"{name} missing from the local store"
    assert list((out / "events").glob("part-*.parquet")), "no event shards written"
    assert summary["keys"] > 0 and summary["edges"] > 0
    assert set(summary["alerts"]) == {"critical", "high", "medium", "low"}


def test_accounting_holds_per_file_and_in_totals(sample_run: tuple[Path, dict]) -> None:
    out, summary = sample_run
    on_disk = json.loads((out / "run_summary.json").read_text())
    assert on_disk == summary
    for f in summary["files"]:
        assert f["records_in"] == (f["events"] + f["duplicates"] + sum(f["skipped"].values())
                                   + sum(f["quarantined"].values())), f["path"]
    t = summary["totals"]
    assert t["records_in"] == t["events"] + t["duplicates"] + sum(t["skipped"].values()) + sum(
        t["quarantined"].values())
    # Every quarantined record is in quarantine.ndjson with its reason and provenance.
    lines = [json.loads(x) for x in (out / "quarantine.ndjson").read_text().splitlines() if x]
    assert len(lines) == sum(t["quarantined"].values())
    for q in lines:
        assert q["reason"] and q["log.file.path"] and q["log.offset"] is not None
    # Events in the Parquet store equal the events counted.
    assert len(read_events(out)) == t["events"]


def test_two_runs_are_byte_identical(sample_run: tuple[Path, dict],
                                     tmp_path: Path) -> None:
    out1, _ = sample_run
    out2 = tmp_path / "run2"
    run_batch([str(SAMPLES)], str(out2))
    assert _digest_tree(out1) == _digest_tree(out2)


def test_rerun_into_same_dir_replaces_stale_shards(tmp_path: Path) -> None:
    a = tmp_path / "a.ndjson"
    b = tmp_path / "b.ndjson"
    rec = {"time": "2025-01-01T00:00:00Z", "type": "response",
           "request": {"id": "r1", "operation": "update", "path": "transit/encrypt/k1"},
           "response": {}}
    a.write_text(json.dumps(rec) + "\n")
    b.write_text(json.dumps({**rec, "request": {**rec["request"], "id": "r2"}}) + "\n")
    out = tmp_path / "out"
    run_batch([str(a), str(b)], str(out))
    first = len(read_events(out))
    run_batch([str(a)], str(out))
    assert len(read_events(out)) == first - 1


def test_gzip_input_is_read_transparently(tmp_path: Path) -> None:
    src = REAL_LOGS / "cloudtrail" / "aws-kms-developer-guide.json"
    if not src.exists():
        pytest.skip("../shared/real_logs not present: cannot compare gz and plain input")
    plain = tmp_path / "plain" / "x.json"
    packed = tmp_path / "gz" / "x.bin"  # no .gz suffix: detection is by content
    plain.parent.mkdir()
    packed.parent.mkdir()
    plain.write_bytes(src.read_bytes())
    packed.write_bytes(gzip.compress(src.read_bytes()))
    s1 = run_batch([str(plain)], str(tmp_path / "o1"))
    s2 = run_batch([str(packed)], str(tmp_path / "o2"))
    assert s1["totals"] == s2["totals"]
    assert s1["totals"]["events"] > 0


def test_corrupt_gzip_is_quarantined_not_fatal(tmp_path: Path) -> None:
    good = gzip.compress(b'{"Records":[]}' * 10)
    bad = tmp_path / "broken.json.gz"
    bad.write_bytes(good[: len(good) // 2] + b"\x00garbage")
    summary = run_batch([str(bad)], str(tmp_path / "o"))
    f = summary["files"][0]
    assert sum(f["quarantined"].values()) >= 1
    assert summary["accounting_ok"]


def test_events_parquet_has_ecs_columns(sample_run: tuple[Path, dict]) -> None:
    out, _ = sample_run
    shard = sorted((out / "events").glob("*.parquet"))[0]
    cols = pq.read_schema(shard).names
    for name in ("@timestamp", "event.id", "event.dataset", "keytrail.key.uid",
                 "keytrail.operation", "log.file.path", "log.offset"):
        assert name in cols


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=600)


def test_cli_missing_input_is_one_line_error(tmp_path: Path) -> None:
    r = _cli("run", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip() and "crcmod" not in x]
    assert len(lines) == 1, r.stderr
    assert "not found" in lines[0] and "Traceback" not in r.stderr


def test_cli_bad_config_names_the_key_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("graph:\n  window: 5m\ncryptoperiods:\n  - name: x\n    days: -3\n")
    r = _cli("run", str(REPO / "sample_logs"), "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "graph.window" in r.stderr and "cryptoperiods[0].days" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_unknown_flag_is_usage_error(tmp_path: Path) -> None:
    r = _cli("inventory", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr


def test_cli_inventory_without_run_explains(tmp_path: Path) -> None:
    r = _cli("inventory", "--out", str(tmp_path / "none"))
    assert r.returncode == 2 and "keytrail run" in r.stderr
