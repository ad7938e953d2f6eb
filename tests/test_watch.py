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

import orjson
import pytest

from bench.corpus import cloudtrail_record, vault_pair
from pipelines.config import KeytrailConfig
from pipelines.run import run_batch
from pipelines.store import read_events
from pipelines.watch import LocalSource, Watcher
from tests.golden_util import REPO

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
