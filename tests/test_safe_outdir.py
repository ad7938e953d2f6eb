"""`--out` safety: only new/empty dirs or keytrail stores are used, nothing is written
through a symlink, and only files keytrail names are ever deleted (issue 15, item 6)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.outdir import MARKER, OutDirError, append_file, atomic_write, claim_out_dir
from pipelines.run import run_batch
from tests.golden_util import REPO, SAMPLES

ONE_INPUT = SAMPLES / "aws_cloudtrail" / "eventbridge-kms.ndjson"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_non_store_dir_is_refused_and_its_files_survive(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "events").mkdir(parents=True)
    precious = home / "events" / "thesis.txt"
    precious.write_text("years of work")
    (home / "_quarantine").mkdir()
    (home / "_quarantine" / "notes.ndjson").write_text("{}\n")
    r = _cli("run", str(ONE_INPUT), "--out", str(home))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "not a keytrail store" in lines[0] and "Traceback" not in r.stderr
    assert precious.read_text() == "years of work"
    assert (home / "_quarantine" / "notes.ndjson").exists()
    assert not (home / MARKER).exists()


def test_new_and_empty_dirs_become_stores(tmp_path: Path) -> None:
    new = tmp_path / "a" / "b"
    claim_out_dir(new)
    assert (new / MARKER).is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_out_dir(empty)
    assert (empty / MARKER).is_file()
    claim_out_dir(empty)  # a store is reused
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutDirError, match="not a directory"):
        claim_out_dir(f)


def test_symlinks_planted_in_out_are_not_followed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    claim_out_dir(out)
    victims = {}
    for name in ("report.html", "graph.graphml", "inventory.json", "run_summary.json",
                 ".quarantine.ndjson.tmp", "quarantine.ndjson"):
        victim = tmp_path / f"victim-{name.strip('.')}"
        victim.write_text("do not touch")
        (out / name).symlink_to(victim)
        victims[name] = victim
    run_batch([str(ONE_INPUT)], str(out))
    for name, victim in victims.items():
        assert victim.read_text() == "do not touch", name
        if not name.endswith(".tmp"):
            assert not (out / name).is_symlink(), name
            assert (out / name).is_file(), name
    # no temp file left behind, none with a fixed name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_symlinked_events_dir_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    claim_out_dir(out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (out / "events").symlink_to(elsewhere)
    r = _cli("run", str(ONE_INPUT), "--out", str(out))
    assert r.returncode != 0 and "symlink" in r.stderr and "Traceback" not in r.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]


def test_rerun_deletes_only_keytrail_shards(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch([str(ONE_INPUT)], str(out))
    shards = sorted((out / "events").glob("part-*.parquet"))
    assert shards
    stale = out / "events" / ("part-" + "0" * 32 + ".parquet")
    stale.write_bytes(b"stale shard of an earlier input")
    mine = out / "events" / "my-notes.txt"
    mine.write_text("keep")
    os.mkdir(out / "events" / "subdir")
    run_batch([str(ONE_INPUT)], str(out))
    assert not stale.exists()
    assert mine.read_text() == "keep" and (out / "events" / "subdir").is_dir()
    assert sorted((out / "events").glob("part-*.parquet")) == shards


def test_atomic_write_replaces_a_symlink_and_append_refuses_one(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("original")
    link = tmp_path / "dir" / "f"
    link.parent.mkdir()
    link.symlink_to(victim)
    atomic_write(link, b"new")
    assert victim.read_text() == "original" and link.read_bytes() == b"new"
    assert not link.is_symlink()
    dl = tmp_path / "dir" / "dead_letter.ndjson"
    dl.symlink_to(victim)
    with pytest.raises(OutDirError, match="symlink"):
        append_file(dl)
    assert victim.read_text() == "original"
    # created files get the usual permissions, not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert (link.stat().st_mode & 0o777) == (0o666 & ~umask)
