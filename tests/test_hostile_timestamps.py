"""A record with an impossible date is quarantined as `bad_timestamp`; the file goes on.

Issue 15 item 2: a spoofed syslog line with a 20-digit day, or `9999-12-31T23:59:59-01:00`,
raised OverflowError, so `run` dropped the rest of the file and `parse` printed a
traceback. Every parser's timestamp path is fed the same hostile values, through `parse`
and `run`, with the compiled fast paths on and off (they must agree).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from parsers.detect import parse_bytes
from parsers.schema import KeyEvent
from parsers.timeutil import BadTimestamp, from_epoch_ms, from_epoch_us, normalize_iso

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
HUGE_DAY = "99999999999999999999"
HOSTILE_TIMES = ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
                 "1969-12-31T23:59:59Z", f"2025-01-{HUGE_DAY}T00:00:00Z",
                 "2025-01-01T00:00:00+99:99")


def _lines(path: Path, n: int) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()][:n]


def _corpora() -> dict[str, bytes]:
    """One small file per parser/format: good record, hostile record, two good records."""
    luna = _lines(SAMPLES / "hsm/luna-appliance-syslog.log", 3)
    luna_bad = f"2025 Jan {HUGE_DAY} 09:58:02" + luna[0][len("2025 Jan 20 09:58:02"):]
    nsh = _lines(SAMPLES / "hsm/nshield-ncore-audit.ndjson", 3)
    nsh_bad = orjson.dumps({**orjson.loads(nsh[0]), "seqno": 1,
                            "time": "9999-12-31T23:59:59-01:00"}).decode()
    ct = _lines(SAMPLES / "aws_cloudtrail/ndjson-2026.ndjson", 3)
    ct_bad = orjson.dumps({**orjson.loads(ct[0]), "eventID": "bad-time",
                           "eventTime": "9999-12-31T23:59:59-01:00"}).decode()
    kv = _lines(SAMPLES / "azure_keyvault/pt1h-auditevent.ndjson", 3)
    kv_bad = orjson.dumps({**orjson.loads(kv[0]), "correlationId": "bad-time",
                           "time": "9999-12-31T23:59:59-01:00"}).decode()
    va = _lines(SAMPLES / "hashicorp_vault/vault-audit-file.log", 4)
    va_bad = orjson.dumps({**orjson.loads(va[0]), "time": "9999-12-31T23:59:59-01:00"}).decode()
    return {
        "luna.log": "\n".join([luna[0], luna_bad, *luna[1:]]).encode(),
        "luna-bad-first.log": "\n".join([luna_bad, *luna]).encode(),
        "nshield.ndjson": "\n".join([nsh[0], nsh_bad, *nsh[1:]]).encode(),
        "cloudtrail.ndjson": "\n".join([ct[0], ct_bad, *ct[1:]]).encode(),
        "keyvault.ndjson": "\n".join([kv[0], kv_bad, *kv[1:]]).encode(),
        "vault.log": "\n".join([va_bad, *va]).encode(),
    }


@pytest.mark.parametrize("value", HOSTILE_TIMES)
def test_every_conversion_is_total(value: str) -> None:
    with pytest.raises(BadTimestamp):
        normalize_iso(value)
    for fn, arg in ((from_epoch_ms, 10**30), (from_epoch_ms, -10**30), (from_epoch_us, 10**30)):
        with pytest.raises(BadTimestamp):
            fn(arg)


@pytest.mark.parametrize("name", sorted(_corpora()))
def test_bad_time_is_quarantined_and_later_records_are_read(name: str) -> None:
    data = _corpora()[name]
    _, outcomes = parse_bytes(data, name)
    reasons = [getattr(o, "reason", None) for o in outcomes]
    assert "bad_timestamp" in reasons, reasons
    events = [o for o in outcomes if isinstance(o, KeyEvent)]
    # every good record still became an event (or a deliberate skip), none were lost
    assert len(outcomes) >= len(data.splitlines())
    assert events, reasons
    assert not [r for r in reasons if r == "parser_error"]


def _cli(args: list[str], native: bool, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO), KEYTRAIL_NATIVE="1" if native else "0")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, timeout=600, check=False)


def test_parse_and_run_keep_reading_after_a_bad_time(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    corpora = _corpora()
    for name, data in corpora.items():
        (inputs / name).write_bytes(data)
    outs = {}
    for native in (True, False):
        p = _cli(["parse", "--json", str(inputs)], native, tmp_path)
        assert p.returncode == 0, p.stderr.decode()[-2000:]
        assert b"Traceback" not in p.stderr
        outs[native] = p.stdout
        files = orjson.loads(p.stderr.splitlines()[-1])["files"]
        for f in files:
            assert f["quarantined"].get("bad_timestamp") == 1, f
            assert "parser_error" not in f["quarantined"], f
    assert outs[True] == outs[False], "native and Python disagree on hostile timestamps"
    table = _cli(["parse", str(inputs)], True, tmp_path)
    assert table.returncode == 0 and b"Traceback" not in table.stderr

    run = _cli(["run", str(inputs), "--out", str(tmp_path / "out"), "--quiet"], True, tmp_path)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    summary = orjson.loads((tmp_path / "out" / "run_summary.json").read_bytes())
    for f in summary["files"]:
        assert f["quarantined"] == {"bad_timestamp": 1}, f
        # every record after the bad one was read: the file's records are all accounted
        assert f["records_in"] >= len(corpora[Path(f["path"]).name].splitlines()), f
        assert f["records_in"] == (f["events"] + sum(f["skipped"].values()) + 1
                                   + f.get("duplicates", 0)), f
