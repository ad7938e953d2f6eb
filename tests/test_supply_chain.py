"""The dependency audit (.ci/audit.py) catches a vulnerable pin offline, for Python and
for the Cargo crates of the native path, and the lock covers what CI installs."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.golden_util import REPO


def _audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", REPO / ".ci" / "audit.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_local_snapshot_flags_a_vulnerable_python_pin(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("pip-audit") is None and importlib.util.find_spec("pip_audit") is None:
        pytest.skip("pip-audit not installed (dev dependency)")
    audit = _audit()
    lock = tmp_path / "requirements.lock"
    lock.write_text("requests==2.19.0\nidna==3.10\n")
    monkeypatch.setattr(audit, "LOCK", lock)
    srv = audit.serve_snapshot(json.loads(audit.SNAPSHOT.read_text()))
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1/query"
        _rc, doc, err = audit.pip_audit(["-s", "osv", "--osv-url", url], [])
    finally:
        srv.shutdown()
    assert doc is not None, err
    vulns = {d["name"]: [v["id"] for v in d.get("vulns", [])] for d in doc["dependencies"]}
    assert vulns["requests"], vulns  # e.g. PYSEC-2018-28 (fixed in 2.20.0)
    assert vulns["idna"] == []


def test_cargo_lock_check_flags_old_pyo3_and_passes_the_current_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = _audit()
    monkeypatch.setenv("PATH", "")  # no cargo: the snapshot check runs
    assert audit.cargo_audit([]) == 0, capsys.readouterr().out
    current = audit.CARGO_LOCK.read_text()
    assert re.search(r'name = "pyo3"\nversion = "0\.(29|[3-9]\d)\.', current)
    old = tmp_path / "Cargo.lock"
    old.write_text(re.sub(r'(name = "pyo3[-a-z]*"\nversion = )"[^"]+"', r'\1"0.23.5"', current))
    monkeypatch.setattr(audit, "CARGO_LOCK", old)
    assert audit.cargo_audit([]) == 1
    out = capsys.readouterr().out
    assert "RUSTSEC-2025-0020" in out and "RUSTSEC-2026-0177" in out
    assert "local RustSec snapshot" in out
    assert audit.cargo_audit(["RUSTSEC-2025-0020", "RUSTSEC-2026-0177"]) == 0


def test_lock_pins_every_installed_dev_dependency() -> None:
    pins = {re.sub(r"[-_.]+", "-", ln.split("==")[0]).lower()
            for ln in (REPO / "requirements.lock").read_text().splitlines()
            if ln and not ln.startswith("#")}
    for needed in ("apache-beam", "pyarrow", "orjson", "pytest", "hypothesis", "pip-audit"):
        assert needed in pins
    assert "keytrail" not in pins
