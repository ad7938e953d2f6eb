"""The same event delivered twice counts once everywhere (DESIGN.md section 5).

Each delivery layout that repeats events is compared with a run over the de-duplicated
input, on everything a user reads: inventory (usage counts, history), graph edges, alerts
(counts, explanations, evidence; gated burst detectors included), the event store, and the
run summary, which reports the dropped copies per file.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bench.corpus import cloudtrail_record, vault_pair
from parsers.base import REGISTRY
from parsers.detect import parse_stream
from parsers.schema import KeyEvent
from pipelines.config import KeytrailConfig
from pipelines.dedupe import drop_duplicates
from pipelines.detection import load_detection
from pipelines.finalize import finalize_state
from pipelines.generate import generate
from pipelines.process import EVENTS_DIR, FileProcessor
from pipelines.run import run_batch
from pipelines.sources import expand_inputs, open_input
from pipelines.state import RunState
from pipelines.store import read_events
from pipelines.watch import LocalSource, Watcher


def outputs(out: Path) -> dict[str, Any]:
    """Everything a user reads from a local store, in comparable form."""
    return {
        "inventory": json.loads((out / "inventory.json").read_text()),
        "graph": json.loads((out / "graph.json").read_text()),
        "alerts": [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()],
        "events": read_events(out),
    }


def expected_duplicates(src: Path) -> dict[str, int]:
    """Per input file, how many of its events were seen before: in an earlier file by path
    or earlier in the same file (the copy kept is the first by path and offset)."""
    parsers = REGISTRY.create_all()
    seen: set[str] = set()
    out = {}
    for f in sorted(expand_inputs([str(src)]), key=lambda f: f.uri):
        n = 0
        with open_input(f) as stream:
            _, outcomes = parse_stream(stream, f.uri, parsers)
            for o in outcomes:
                if isinstance(o, KeyEvent):
                    if o.event_id in seen:
                        n += 1
                    seen.add(o.event_id)
        out[f.uri] = n
    return out


def ct_records(path: Path) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = orjson.loads(gzip.decompress(path.read_bytes()))["Records"]
    return recs


def write_ct(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"Records": records}))


def paired_prefix(lines: list[bytes], share: float) -> list[bytes]:
    """The longest prefix of at most `share` of a Vault audit log with no request pending
    (a rotated copy cut where every request has its response)."""
    open_ids: set[str] = set()
    best = 0
    for i, line in enumerate(lines[: int(len(lines) * share)]):
        rec = orjson.loads(line)
        rid = rec.get("request", {}).get("id", "")
        if rec.get("type") == "request":
            open_ids.add(rid)
        else:
            open_ids.discard(rid)
        if not open_ids:
            best = i + 1
    return lines[:best]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A generated month with attacks, run once de-duplicated and once with every
    duplicate delivery layout added (same directory, so provenance is comparable)."""
    root = tmp_path_factory.mktemp("dedupe")
    src = root / "logs"
    generate(str(src), seed=3, days=20, scale=0.3)
    (src / "labels.json").unlink()
    ct = sorted((src / "AWSLogs").rglob("*.json.gz"))
    blobs = sorted((src / "insights-logs-auditevent").rglob("PT1H.json"))
    vault = sorted((src / "vault-audit").glob("*.log"))
    rng = random.Random(11)
    # (b) organization trail: records of accounts not in the account trail first (kept),
    # then the account trail's records regrouped across hourly objects (duplicates).
    org_only = [ct_records(p) for p in ct[:3]]
    for p in ct[:3]:
        p.unlink()
    day = ct[40].parent
    day_records = [r for p in sorted(day.glob("*.json.gz")) for r in ct_records(p)]
    rng.shuffle(day_records)
    half = len(day_records) // 2
    org = {src / "zz-org-trail" / f"org-{i}.json": (org_only[i], regrouped)
           for i, regrouped in enumerate((day_records[:half], day_records[half:], []))}
    # (c) overlapping Key Vault exports of the same records.
    export_a = blobs[0].read_bytes() + blobs[1].read_bytes()
    b1 = blobs[1].read_bytes().splitlines(keepends=True)
    export_b_own = blobs[2].read_bytes()
    blobs[0].unlink()
    blobs[1].unlink()
    blobs[2].unlink()
    export_b_dups = b"".join(b1[: len(b1) // 2 + 1]) + b"".join(
        p.read_bytes() for p in blobs[3:])
    exports = src / "zz-kv-exports"
    exports.mkdir()

    # The de-duplicated input.
    for path, (own, _) in org.items():
        write_ct(path, own)
    (exports / "export-a.json").write_bytes(export_a)
    (exports / "export-b.json").write_bytes(export_b_own)
    ref_out = root / "ref"
    ref_summary = run_batch([str(src)], str(ref_out))
    ref = outputs(ref_out)

    # The same records delivered again, in every layout.
    for path, (own, regrouped) in org.items():  # (b)
        write_ct(path, own + regrouped)
    redelivery = src / "zz-redelivered"  # (a) the identical objects under other names
    redelivery.mkdir()
    for p in ct[3:]:
        shutil.copyfile(p, redelivery / p.name)
    (exports / "export-b.json").write_bytes(export_b_own + export_b_dups)  # (c)
    for p in vault:  # (d) rotated copies of the Vault audit files
        p.with_name(p.name + ".1").write_bytes(b"".join(
            paired_prefix(p.read_bytes().splitlines(keepends=True), 0.6)))
    expected = expected_duplicates(src)
    dup_out = root / "dup"
    dup_summary = run_batch([str(src)], str(dup_out))
    return {"src": src, "ref": ref, "ref_summary": ref_summary, "dup": outputs(dup_out),
            "dup_summary": dup_summary, "expected": expected, "dup_out": dup_out}


def test_duplicate_layouts_equal_the_deduplicated_run(layouts: dict[str, Any]) -> None:
    ref, dup = layouts["ref"], layouts["dup"]
    assert dup["inventory"] == ref["inventory"], "usage counts or history differ"
    assert dup["graph"] == ref["graph"], "edge counts differ"
    assert dup["alerts"] == ref["alerts"], "alert counts, explanations or evidence differ"
    assert dup["events"] == ref["events"], "the event store holds duplicate or other rows"
    # The comparison covers what duplicates used to inflate.
    detection, _ = load_detection(KeytrailConfig())
    assert detection is not None
    fired = {a["rule.id"] for a in ref["alerts"]}
    assert {"akv_burst_retrieval", "vault_burst_reads", "kms_denied_burst"} <= fired
    assert any(a["keytrail.alert.event_count"] > 1 for a in ref["alerts"]
               if a["rule.id"] in detection.gates)
    assert sum(r["usage_counts"].get("decrypt", 0) for r in ref["inventory"]) > 0


def test_summary_reports_dropped_copies_per_file(layouts: dict[str, Any]) -> None:
    ref, dup = layouts["ref_summary"], layouts["dup_summary"]
    expected: dict[str, int] = layouts["expected"]
    got = {f["path"]: f["duplicates"] for f in dup["files"]}
    assert got == expected
    src = layouts["src"]
    # Every layout delivered duplicates: (a) re-delivered objects, (b) the organization
    # trail, (c) the overlapping Key Vault export, (d) the rotated Vault audit files.
    for part in ("zz-redelivered/", "zz-org-trail/org-0", "zz-kv-exports/export-b",
                 "vault-audit/vault_audit-2025-03-10.log.1"):
        assert any(part in p and n for p, n in got.items()), part
    assert not any(n for p, n in got.items() if not p.startswith(str(src / "zz-"))
                   and not p.endswith(".log.1"))
    assert dup["totals"]["duplicates"] == sum(expected.values())
    assert dup["totals"]["events"] == ref["totals"]["events"]
    assert dup["events_by_dataset"] == ref["events_by_dataset"]
    assert (dup["keys"], dup["edges"], dup["alerts"]) == (ref["keys"], ref["edges"],
                                                          ref["alerts"])
    assert dup["accounting_ok"]
    for f in dup["files"]:
        assert f["records_in"] == f["events"] + f["duplicates"] + sum(
            f["skipped"].values()) + sum(f["quarantined"].values()), f["path"]
    # The store's shards hold no dropped copy: one row per event id.
    ids = [e["event.id"] for e in read_events(layouts["dup_out"])]
    assert len(ids) == len(set(ids)) == dup["totals"]["events"]


def _small_corpus(root: Path) -> tuple[Path, Path]:
    """Vault and CloudTrail files with duplicates inside and across files: (dup, ref)."""
    rng = random.Random(5)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    lines = []
    for i in range(300):
        a, b = vault_pair(rng, base + timedelta(seconds=7 * i), i)
        lines += [orjson.dumps(a) + b"\n", orjson.dumps(b) + b"\n"]
    recs = [cloudtrail_record(rng, base + timedelta(seconds=11 * i), i) for i in range(400)]
    for i in range(0, 400, 10):  # lifecycle calls: key history entries and alerts
        recs[i]["eventName"] = ("DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy")[i % 3]
    ref, dup = root / "ref", root / "dup"
    for d in (ref, dup):
        d.mkdir()
        (d / "a-audit.log").write_bytes(b"".join(lines[:400]))
        write_ct(d / "b-trail.json", recs[:250])
    (ref / "c-audit.log").write_bytes(b"".join(lines[400:]))
    write_ct(ref / "d-trail.json", recs[250:])
    # Later files repeat records of earlier ones (and one record twice in the same file).
    (dup / "c-audit.log").write_bytes(b"".join(lines[400:] + lines[100:300]))
    write_ct(dup / "d-trail.json", recs[250:] + recs[::3] + [recs[260]])
    return dup, ref


def _fold_partitioned(src: Path, out: Path, parts: int, seed: int) -> dict[str, Any]:
    cfg = KeytrailConfig()
    detection, inventory_dets = load_detection(cfg)
    fp = FileProcessor(str(out), cfg.parse, cfg.graph_window, detection, gate_windows=True)
    files = expand_inputs([str(src)])
    rng = random.Random(seed)
    rng.shuffle(files)
    states = [RunState() for _ in range(parts)]
    for i, f in enumerate(files):
        states[i % parts].absorb(fp.process(f))
    rng.shuffle(states)
    st = RunState()
    for s in states:
        st.absorb(s)
    drop_duplicates(st, out, fp)
    summary, (inventory, edges, resources, alerts, signals) = finalize_state(
        st, cfg, detection, inventory_dets, [], out / EVENTS_DIR)
    return {"inventory": inventory, "edges": edges, "resources": resources, "alerts": alerts,
            "signals": signals,
            "events": read_events(out), "n": summary["totals"]["events"],
            "files": {f["path"]: f["duplicates"] for f in summary["files"]}}


def test_result_does_not_depend_on_partitions_or_merge_order(tmp_path: Path) -> None:
    dup, ref = _small_corpus(tmp_path)
    expected = expected_duplicates(dup)
    assert expected[str(dup / "c-audit.log")] > 0 and expected[str(dup / "d-trail.json")] > 0
    want = _fold_partitioned(ref, tmp_path / "out-ref", 1, 0)
    want.pop("files")
    for parts, seed in ((1, 0), (2, 1), (4, 2), (4, 3)):
        got = _fold_partitioned(dup, tmp_path / f"out-{parts}-{seed}", parts, seed)
        assert got.pop("files") == expected
        # The inputs differ only by their directory: align it, then require equality.
        assert orjson.loads(orjson.dumps(got).replace(b"/dup/", b"/ref/")) == want, (
            f"{parts} partitions, seed {seed}: differs from the de-duplicated input")


def test_id_prefix_collisions_never_drop_a_different_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.store as store

    real = store.id_prefixes
    # 16 distinct prefixes for all events: nearly every event collides with another.
    monkeypatch.setattr(store, "id_prefixes", lambda col: real(col) & np.uint64(15))
    dup, ref = _small_corpus(tmp_path)
    want = _fold_partitioned(ref, tmp_path / "out-ref", 1, 0)
    want.pop("files")
    got = _fold_partitioned(dup, tmp_path / "out-dup", 2, 7)
    assert got.pop("files") == expected_duplicates(dup)
    assert orjson.loads(orjson.dumps(got).replace(b"/dup/", b"/ref/")) == want


def test_id_prefixes_are_the_hex_id_head_or_a_hash() -> None:
    import pyarrow as pa

    from parsers.base import stable_id
    from pipelines.store import id_prefixes

    ids = [stable_id("e", i) for i in range(50)]
    col = pa.array(["x", *ids, "y"]).slice(1, 50)  # an Arrow slice: buffers with an offset
    assert id_prefixes(col).tolist() == [int(i[:16], 16) for i in ids]
    odd = pa.array(["not-hex-at-all-but-long", "short", "\u00e9" * 20, ids[0].upper()])
    got = id_prefixes(odd).tolist()
    assert got == id_prefixes(odd).tolist() and len(set(got)) == 4
    assert got[3] == int(ids[0][:16], 16)


def test_parse_counts_a_repeated_event_once_like_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.golden_util import REPO

    dup, _ = _small_corpus(tmp_path)
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "parse", str(dup), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    files = json.loads(r.stderr.strip().splitlines()[-1])["files"]
    assert {f["path"]: f["duplicates"] for f in files} == expected_duplicates(dup)
    summary = run_batch([str(dup)], str(tmp_path / "out"))
    assert [(f["records_in"], f["events"], f["duplicates"]) for f in files] == [
        (f["records_in"], f["events"], f["duplicates"]) for f in summary["files"]]
    printed = [json.loads(x)["event.id"] for x in r.stdout.splitlines() if '"event.id"' in x]
    assert len(printed) == len(set(printed)) == summary["totals"]["events"]
    # The auditor report says where copies were dropped.
    assert "duplicates (counted once)" in (tmp_path / "out" / "report.html").read_text()


def _watcher(src: Path, tmp: Path) -> Watcher:
    return Watcher([LocalSource(str(src), settle=0.0)], str(tmp / "out"), str(tmp / "state"),
                   KeytrailConfig(), interval=0.1, quiet=True)


def test_watch_drops_a_copy_that_arrives_in_a_later_cycle(tmp_path: Path) -> None:
    dup, _ = _small_corpus(tmp_path)
    expected = {Path(p).name: n for p, n in expected_duplicates(dup).items()}
    live = tmp_path / "live"
    live.mkdir()
    for name in ("a-audit.log", "b-trail.json"):
        shutil.copyfile(dup / name, live / name)
    first = _watcher(live, tmp_path).cycle().events
    # Each later cycle in a new process (restart): the id index comes back from the state
    # directory, and the copies of events committed in earlier cycles are dropped.
    shutil.copyfile(dup / "c-audit.log", live / "c-audit.log")
    second = _watcher(live, tmp_path).cycle().events
    shutil.copyfile(dup / "d-trail.json", live / "d-trail.json")
    third = _watcher(live, tmp_path).cycle().events
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert {Path(f["path"]).name: f["duplicates"] for f in summary["files"]} == expected
    assert expected["c-audit.log"] and expected["d-trail.json"]
    batch = tmp_path / "batch"
    run_batch([str(live)], str(batch))
    want_summary = json.loads((batch / "run_summary.json").read_text())
    assert first + second + third == summary["totals"]["events"] == want_summary["totals"][
        "events"]
    assert summary["totals"]["duplicates"] == want_summary["totals"]["duplicates"]
    got, want = outputs(tmp_path / "out"), outputs(batch)
    assert got["events"] == want["events"], "the live event store differs from the batch run"
    assert got["inventory"] == want["inventory"]
    assert got["graph"] == want["graph"]
    assert got["alerts"] == want["alerts"]
    # A copy that sorts before the committed one arrives last: live mode keeps what it
    # committed, and history and evidence keep pointing at that stored copy.
    early = live / "0-early-copy.json"
    write_ct(early, json.loads((dup / "b-trail.json").read_bytes())["Records"][:120])
    assert _watcher(live, tmp_path).cycle().events == 0
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert {Path(f["path"]).name: f["duplicates"] for f in summary["files"]}[
        "0-early-copy.json"] == 120
    got = outputs(tmp_path / "out")
    assert got["events"] == want["events"]
    assert got["inventory"] == want["inventory"], "history points at a dropped copy"
    assert got["graph"] == want["graph"]
    assert got["alerts"] == want["alerts"], "alert evidence points at a dropped copy"
