"""Live mode on local files: growing files, rotation, truncation, and kill -9 crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.corpus import cloudhsm_block, cloudtrail_record, vault_pair
from pipelines.config import KeytrailConfig
from pipelines.run import run_batch
from pipelines.store import read_events
from pipelines.watch import LocalSource, LocalWatchSink, Watcher
from tests.golden_util import REPO
from tests.live_equivalence import differences

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def vault_lines(rng: random.Random, start: int, n: int) -> bytes:
    out = []
    for i in range(start, start + n):
        a, b = vault_pair(rng, BASE + timedelta(minutes=i), i)
        out += [orjson.dumps(a), orjson.dumps(b)]
    return b"\n".join(out) + b"\n"


def ct_file(rng: random.Random, start: int, n: int) -> bytes:
    recs = [cloudtrail_record(rng, BASE + timedelta(minutes=i), i) for i in range(start, start + n)]
    return b"\n".join(orjson.dumps(r) for r in recs) + b"\n"


def watcher(src: Path, tmp: Path) -> Watcher:
    return Watcher([LocalSource(str(src), settle=0.0)], str(tmp / "out"), str(tmp / "state"),
                   KeytrailConfig(), interval=0.1, quiet=True)


def event_ids(out: Path) -> list[str]:
    return sorted(r["event.id"] for r in read_events(out))


def comparable(out: Path) -> tuple[list[str], list[str], list[str], dict]:
    inv = json.loads((out / "inventory.json").read_text())
    alerts = [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines() if x]
    summary = json.loads((out / "run_summary.json").read_text())
    return (event_ids(out), sorted(json.dumps(r, sort_keys=True) for r in inv),
            sorted(a["keytrail.alert.id"] for a in alerts), summary["totals"])


def test_growing_file_is_processed_incrementally_and_matches_batch(tmp_path: Path) -> None:
    rng = random.Random(1)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    log.write_bytes(vault_lines(rng, 0, 50))
    w = watcher(src, tmp_path)
    m1 = w.cycle()
    assert m1.units_processed == 1 and m1.events == 50
    with log.open("ab") as fh:
        fh.write(vault_lines(rng, 50, 30))
        fh.write(b'{"time":"2026-03-01T10:00:00Z","type":"req')  # incomplete last line
    m2 = LocalSource(str(src), settle=3600.0)  # file is "still being written"
    w.sources = [m2]
    c2 = w.cycle()
    assert c2.events == 30, "only complete new lines are read from a growing file"
    assert w.cycle().units_processed == 0, "nothing new: nothing reprocessed"
    (src / "more.ndjson").write_bytes(ct_file(rng, 100, 20))
    w.sources = [LocalSource(str(src), settle=0.0)]
    w.cycle()
    batch = tmp_path / "batch"
    run_batch([str(src)], str(batch))
    live, ref = comparable(tmp_path / "out"), comparable(batch)
    assert live[:3] == ref[:3]
    assert live[3]["events"] == ref[3]["events"]


def test_rotation_and_truncation(tmp_path: Path) -> None:
    rng = random.Random(2)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    log.write_bytes(vault_lines(rng, 0, 10))
    w = watcher(src, tmp_path)
    w.cycle()
    os.rename(log, src / "audit.log.1")  # logrotate: same inode under a new name
    log.write_bytes(vault_lines(rng, 10, 5))
    m = w.cycle()
    assert m.events == 5, "the rotated file is not read again; the new file is"
    log.write_bytes(vault_lines(rng, 100, 3))  # truncated and rewritten in place
    m = w.cycle()
    assert m.events == 3
    assert len(set(event_ids(tmp_path / "out"))) == 18


def _spawn(src: Path, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "watch", str(src), "--out", str(tmp / "out"),
         "--state", str(tmp / "state"), "--interval", "0.05", "--settle", "0", "-q"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "vault-audit.log"
    proc = _spawn(src, tmp_path)
    kills = 0
    try:
        for step in range(12):
            (src / f"ct-{step:02d}.ndjson").write_bytes(ct_file(rng, step * 40, 40))
            with log.open("ab") as fh:
                fh.write(vault_lines(rng, 1000 + step * 25, 25))
            time.sleep(rng.uniform(0.05, 0.6))
            if step % 2 == 1:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = _spawn(src, tmp_path)
        deadline = time.time() + 120
        ref_dir = tmp_path / "batch"
        run_batch([str(src)], str(ref_dir))
        ref = comparable(ref_dir)
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                live = comparable(tmp_path / "out")
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if live[0] == ref[0]:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert kills == 6
    live = comparable(tmp_path / "out")
    ids = event_ids(tmp_path / "out")
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert live[0] == ref[0], "events differ from the batch run over the same files"
    assert live[1] == ref[1], "inventory differs from the batch run"
    assert live[2] == ref[2], "alert ids differ from the batch run"
    assert live[3]["events"] == ref[3]["events"]


# --- live equals batch, by content (issue 16) -------------------------------------------

def _batch(src: Path, tmp: Path) -> Path:
    out = tmp / "batch"
    run_batch([str(src)], str(out))
    return out


class _WriterBetweenPlanAndRead(LocalSource):
    """A writer that appends right after the watcher planned its units."""

    def __init__(self, root: str, appends: list[bytes]) -> None:
        super().__init__(root, settle=0.0)
        self.appends = appends

    def discover(self, cp: dict) -> list:  # type: ignore[type-arg]
        units = super().discover(cp)
        if self.appends:
            with (Path(self.root) / "audit.log").open("ab") as fh:
                fh.write(self.appends.pop(0))
        return units


def test_unit_end_is_fixed_when_planned(tmp_path: Path) -> None:
    rng = random.Random(11)
    src = tmp_path / "src"
    src.mkdir()
    (src / "audit.log").write_bytes(vault_lines(rng, 0, 20))
    w = watcher(src, tmp_path)
    w.sources = [_WriterBetweenPlanAndRead(str(src), [vault_lines(rng, 20, 15)])]
    assert w.cycle().events == 20, "the unit planned at 20 pairs reads 20 pairs"
    assert w.cycle().events == 15
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}


def test_split_pair_is_paired_and_offsets_are_absolute(tmp_path: Path) -> None:
    rng = random.Random(12)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    data = vault_lines(rng, 0, 30)
    lines = data.splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:21]))  # ends with a request whose response is later
    w = watcher(src, tmp_path)
    w.cycle()
    with log.open("ab") as fh:
        fh.write(b"".join(lines[21:]))
    w.cycle()
    live = {r["event.id"]: r for r in read_events(tmp_path / "out")}
    assert {r.get("hashicorp_vault.records") for r in live.values()} == {"pair"}
    for r in live.values():
        off = r["hashicorp_vault.request_offset"]
        assert data[off:].startswith(b'{"time"') and b'"type":"request"' in \
            data[off:data.index(b"\n", off)], "request_offset points at the request line"
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}


def test_unanswered_request_at_the_end_is_as_in_batch_until_answered(tmp_path: Path) -> None:
    rng = random.Random(13)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    lines = vault_lines(rng, 0, 10).splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))
    w = watcher(src, tmp_path)
    w.cycle()
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}
    with log.open("ab") as fh:
        fh.write(lines[-1])
    w.cycle()
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}


def test_partial_line_waits_for_its_newline_however_long_the_stall(tmp_path: Path) -> None:
    rng = random.Random(14)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    data = vault_lines(rng, 0, 10)
    cut = len(data) - 40
    log.write_bytes(data[:cut])
    old = time.time() - 3600
    os.utime(log, (old, old))  # the writer stalled an hour mid-line; settle is 0
    w = watcher(src, tmp_path)
    w.cycle()
    with log.open("ab") as fh:
        fh.write(data[cut:])
    w.cycle()
    assert not (tmp_path / "out" / "quarantine.ndjson").read_text().strip()
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}


def test_cloudhsm_block_appended_in_two_writes(tmp_path: Path) -> None:
    rng = random.Random(15)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "hsm.log"
    text = "".join(cloudhsm_block(rng, BASE + timedelta(minutes=i), i) for i in range(6))
    data = text.encode()
    cut = data.index(b"Opcode", data.index(b"Time", 600))  # inside the third or fourth block
    log.write_bytes(data[:cut])
    w = watcher(src, tmp_path)
    w.cycle()
    with log.open("ab") as fh:
        fh.write(data[cut:])
    w.cycle()
    assert len(read_events(tmp_path / "out")) == 6
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}


class _CrashingSink(LocalWatchSink):
    def deliver(self, *args: Any, **kw: Any) -> dict[str, int]:
        raise RuntimeError("killed before the commit")


def test_cycle_killed_before_commit_leaves_no_shard_behind(tmp_path: Path) -> None:
    rng = random.Random(16)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    log.write_bytes(vault_lines(rng, 0, 20))
    w = watcher(src, tmp_path)
    w.sink = _CrashingSink()
    with pytest.raises(RuntimeError):
        w.cycle()
    with log.open("ab") as fh:  # the retried cycle plans a different unit
        fh.write(vault_lines(rng, 20, 5))
    os.rename(log, src / "audit.log.1")
    w2 = watcher(src, tmp_path)
    w2.cycle()
    assert differences(tmp_path / "out", _batch(src, tmp_path), ignore_paths=True) == {}


def test_copytruncate_rotation_is_not_read_twice(tmp_path: Path) -> None:
    rng = random.Random(17)
    src = tmp_path / "src"
    src.mkdir()
    log = src / "audit.log"
    log.write_bytes(vault_lines(rng, 0, 12))
    w = watcher(src, tmp_path)
    w.cycle()
    hidden = src / ".audit.log.1"
    hidden.write_bytes(log.read_bytes())  # copy, truncate, then the copy appears
    log.write_bytes(b"")
    w.cycle()
    os.rename(hidden, src / "audit.log.1")
    with log.open("ab") as fh:
        fh.write(vault_lines(rng, 12, 4))
    assert w.cycle().events == 4
    assert differences(tmp_path / "out", _batch(src, tmp_path), ignore_paths=True) == {}


class _RotatorBetweenPlanAndRead(LocalSource):
    """copytruncate happens after the watcher planned a unit and before it reads it."""

    def __init__(self, root: str, new: bytes) -> None:
        super().__init__(root, settle=0.0)
        self.new: bytes | None = new

    def discover(self, cp: dict) -> list:  # type: ignore[type-arg]
        units = super().discover(cp)
        if self.new is not None:
            log = Path(self.root) / "audit.log"
            hidden = Path(self.root) / ".audit.log.1"
            hidden.write_bytes(log.read_bytes())
            log.write_bytes(self.new)
            os.rename(hidden, Path(self.root) / "audit.log.1")
            self.new = None
        return units


def test_file_rotated_between_planning_and_reading_is_read_once(tmp_path: Path) -> None:
    rng = random.Random(18)
    src = tmp_path / "src"
    src.mkdir()
    (src / "audit.log").write_bytes(vault_lines(rng, 0, 25))
    w = watcher(src, tmp_path)
    w.sources = [_RotatorBetweenPlanAndRead(str(src), vault_lines(rng, 25, 3))]
    assert w.cycle().events == 0, "bytes that changed under the read are not kept"
    while w.cycle().units_processed:
        pass
    assert differences(tmp_path / "out", _batch(src, tmp_path), ignore_paths=True) == {}


def test_latency_and_event_freshness_are_two_metrics_and_once_counts_all_alerts(
        tmp_path: Path) -> None:
    import shutil

    from tests.golden_util import SAMPLES

    src = tmp_path / "src"
    shutil.copytree(SAMPLES, src, copy_function=shutil.copy)  # they land now
    w = watcher(src, tmp_path)
    m = w.cycle()
    assert m.latency_p50_seconds is not None and m.latency_p95_seconds is not None
    assert m.event_freshness_seconds is not None and m.event_freshness_seconds > 86400, \
        "sample events are old: freshness says so"
    assert m.latency_p95_seconds < 300, "latency is from the file landing, not event time"
    row = json.loads((tmp_path / "out" / "metrics.ndjson").read_text().splitlines()[-1])
    assert row["latency_p95_seconds"] == m.latency_p95_seconds
    alerts = len((tmp_path / "out" / "alerts.ndjson").read_text().splitlines())
    again = watcher(src, tmp_path).cycle()  # a new process, nothing new: `watch --once`
    assert again.units_processed == 0 and again.alerts == alerts == m.alerts


def test_cloudhsm_session_opened_in_an_earlier_write_names_the_actor(tmp_path: Path) -> None:
    from tests.golden_util import SAMPLES

    src = tmp_path / "src"
    src.mkdir()
    log = src / "hsm.log"
    data = (SAMPLES / "hsm" / "cloudhsm-hsm-audit.log").read_bytes()
    cuts = [i + 2 for i in range(len(data)) if data[i:i + 2] == b"\n\n"]
    w = watcher(src, tmp_path)
    prev = 0
    for cut in [*cuts, len(data)]:  # one block per write: every login in an earlier unit
        with log.open("ab") as fh:
            fh.write(data[prev:cut])
        prev = cut
        w.cycle()
    assert differences(tmp_path / "out", _batch(src, tmp_path)) == {}
