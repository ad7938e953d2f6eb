"""Input policy: links out of an input directory are not followed; FIFOs, sockets, devices,
unreadable files and directories are never opened and are reported (issue 15, item 7)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

import pipelines.sources as sources
from pipelines.run import run_batch
from pipelines.sources import scan_inputs
from tests.golden_util import REPO, SAMPLES

SAMPLE = SAMPLES / "aws_cloudtrail" / "eventbridge-kms.ndjson"
SECRET = b"root:$6$SECRET-HASH-DO-NOT-LEAK:19000:0:99999:7:::\n"


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    logs = tmp_path / "logs"
    (logs / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE, logs / "a.ndjson")
    secret_dir = tmp_path / "etc"
    secret_dir.mkdir()
    (secret_dir / "shadow").write_bytes(SECRET)
    (logs / "shadow-link").symlink_to(secret_dir / "shadow")
    (logs / "etc-link").symlink_to(secret_dir, target_is_directory=True)
    (logs / "sub" / "again.ndjson").symlink_to(logs / "a.ndjson")  # inside the root
    (logs / "sub-link").symlink_to(logs / "sub", target_is_directory=True)
    os.mkfifo(logs / "pipe")
    return tmp_path, logs


def _reasons(skipped: list[dict[str, str]], root: Path) -> dict[str, str]:
    return {str(Path(d["path"]).relative_to(root)): d["reason"] for d in skipped}


def test_scan_policy(tree: tuple[Path, Path]) -> None:
    _, logs = tree
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(logs / "sock"))
    try:
        files, skipped = scan_inputs([str(logs)])
    finally:
        sock.close()
    assert [Path(f.uri).relative_to(logs).as_posix() for f in files] == ["a.ndjson"]
    assert _reasons(skipped, logs) == {
        "shadow-link": "symlink_outside_input",
        "etc-link": "symlink_outside_input",
        "sub-link": "symlinked_directory",
        "pipe": "fifo",
        "sock": "socket",
    }


def test_run_reports_skipped_inputs_and_never_reads_outside(tree: tuple[Path, Path],
                                                            capfd: pytest.CaptureFixture[str]
                                                            ) -> None:
    tmp, logs = tree
    out = tmp / "out"
    result: dict[str, object] = {}
    # A FIFO must never be opened: a run that blocks on it would not finish.
    t = threading.Thread(target=lambda: result.update(run_batch([str(logs)], str(out))))
    t.start()
    t.join(240)
    assert not t.is_alive(), "run blocked (opened the FIFO?)"
    summary = orjson.loads((out / "run_summary.json").read_bytes())
    assert _reasons(summary["inputs_skipped"], logs) == {
        "shadow-link": "symlink_outside_input", "etc-link": "symlink_outside_input",
        "sub-link": "symlinked_directory", "pipe": "fifo"}
    assert [f["path"] for f in summary["files"]] == [str(logs / "a.ndjson")]
    for p in out.rglob("*"):
        if p.is_file():
            assert b"SECRET-HASH" not in p.read_bytes(), p
    err = capfd.readouterr().err
    assert f"skipped input {logs / 'shadow-link'}: symlink outside input" in err
    assert f"skipped input {logs / 'pipe'}: fifo" in err


def test_unreadable_directory_and_file_are_reported(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    (logs / "locked").mkdir(parents=True)
    (logs / "locked" / "x.ndjson").write_bytes(SAMPLE.read_bytes())
    shutil.copy(SAMPLE, logs / "secret.ndjson")
    shutil.copy(SAMPLE, logs / "ok.ndjson")
    if os.geteuid() != 0:
        (logs / "locked").chmod(0)
        (logs / "secret.ndjson").chmod(0)
    else:  # root reads everything: inject the permission errors a normal user gets
        real_scandir, real_open = os.scandir, os.open

        def scandir(path: str) -> object:
            if str(path).endswith("locked"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        def fake_open(path: str, flags: int, *a: object) -> int:
            if str(path).endswith("secret.ndjson"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *a)

        monkeypatch.setattr(sources.os, "scandir", scandir)
        monkeypatch.setattr(sources.os, "open", fake_open)
    try:
        files, skipped = scan_inputs([str(logs)])
    finally:
        (logs / "locked").chmod(0o755)
        (logs / "secret.ndjson").chmod(0o644)
    assert [Path(f.uri).name for f in files] == ["ok.ndjson"]
    assert _reasons(skipped, logs) == {"locked": "unreadable_directory",
                                       "secret.ndjson": "unreadable_file"}


def test_named_symlink_is_used_as_named_but_not_a_named_fifo(tmp_path: Path) -> None:
    link = tmp_path / "link.ndjson"
    link.symlink_to(SAMPLE)
    os.mkfifo(tmp_path / "fifo")
    files, skipped = scan_inputs([str(link), str(tmp_path / "fifo")])
    assert [f.uri for f in files] == [str(link)]
    assert skipped == [{"path": str(tmp_path / "fifo"), "reason": "fifo"}]


def test_glob_does_not_leave_its_root(tree: tuple[Path, Path]) -> None:
    _, logs = tree
    files, skipped = scan_inputs([str(logs / "*")])
    assert [Path(f.uri).name for f in files] == ["a.ndjson"]
    assert {"shadow-link": "symlink_outside_input", "pipe": "fifo"}.items() \
        <= _reasons(skipped, logs).items()


def test_parse_cli_reports_and_does_not_print_the_link_target(tree: tuple[Path, Path]) -> None:
    _, logs = tree
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "pipelines.cli", "parse", str(logs), "--json"],
                       cwd=REPO, env=env, capture_output=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert b"SECRET-HASH" not in r.stdout + r.stderr
    assert b"symlink outside input" in r.stderr


def test_directory_paths_are_named_as_before(tree: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # log.file.path (and so event ids) must not depend on how the directory was spelled
    tmp, _ = tree
    monkeypatch.chdir(tmp)
    for spelling in ("logs", "logs/", "./logs"):
        assert [f.uri for f in scan_inputs([spelling])[0]] == ["logs/a.ndjson"], spelling
    assert [f.uri for f in scan_inputs(["./logs/a.ndjson"])[0]] == ["logs/a.ndjson"]
