"""Text for `keytrail detectors list | show ID | test [ID]` (pure; the CLI prints it)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from detectors.base import DetectorError
from detectors.catalog import REGISTRY, _closest, all_ids, load_meta, normalized_exceptions
from detectors.testing import run_cases as _run_cases


def list_table() -> str:
    """One line per detector: id, kind, severity, risk, datasets, title."""
    rows = [("ID", "KIND", "SEVERITY", "RISK", "DATASETS", "TITLE")]
    for det_id in all_ids():
        m = load_meta(det_id)
        rows.append((det_id, REGISTRY.classes[det_id].kind, m.severity, str(m.risk_score),
                     ",".join(m.datasets), m.title))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
             for r in rows]
    return "\n".join(lines) + f"\n{len(rows) - 1} detectors\n"


def _known(det_id: str) -> None:
    if det_id not in REGISTRY.classes:
        raise DetectorError(f"unknown detector {det_id!r}" + _closest(det_id, all_ids())
                            + "; run 'keytrail detectors list'")


def show(det_id: str) -> str:
    """Everything an engineer needs about one detector, readable in a terminal."""
    _known(det_id)
    m = load_meta(det_id)

    def wrap(text: str) -> str:
        return textwrap.fill(text, 96, initial_indent="  ", subsequent_indent="  ")

    tech = "\n".join(f"  {t['id']} {t['name']} ({t['tactic']})" for t in m.techniques)
    params = "\n".join(f"  {k}: {v!r}" for k, v in sorted(m.params.items())) or "  (none)"
    cases = "\n".join(f"  - {c.get('name', i)}: expect {c.get('expect')}"
                      for i, c in enumerate(m.cases))
    return (
        f"{m.id}  v{m.version}  [{REGISTRY.classes[det_id].kind}]\n{m.title}\n\n"
        f"severity: {m.severity}   risk score: {m.risk_score}   "
        f"suppression window: {m.suppression_window}\n"
        f"datasets: {', '.join(m.datasets)}\n\nDescription:\n{wrap(m.description)}\n\n"
        f"ATT&CK:\n{tech}\n\nParameters (tune under detectors.{m.id}.params):\n{params}\n\n"
        f"False positives:\n{wrap(m.false_positives)}\n\nRunbook:\n"
        + textwrap.indent(m.runbook, "  ") + f"\n\nCases:\n{cases}\n")


def run_cases(det_id: str | None = None) -> tuple[bool, str]:
    """Run the YAML cases of one detector (or all): (all passed, report)."""
    ids = [det_id] if det_id else all_ids()
    if det_id:
        _known(det_id)
    lines = []
    ok_all = True
    total = failed = 0
    for i in ids:
        for r in _run_cases(i):
            total += 1
            status = "PASS" if r.ok else "FAIL"
            if not r.ok:
                ok_all = False
                failed += 1
            lines.append(f"{status}  {i}: {r.name} (expect {r.expected}) - {r.message}")
    lines.append(f"{total - failed}/{total} cases passed")
    return ok_all, "\n".join(lines) + "\n"


def tuning_notes(tuning: dict[str, Any], as_of: str | None = None) -> str:
    """Warnings about valid but stale tuning: exceptions past their expiry date (they no
    longer suppress anything), relative to `as_of` (default: today, UTC)."""
    today = (as_of or datetime.now(UTC).strftime("%Y-%m-%d"))[:10]
    lines = []
    for det_id, tune in sorted((tuning or {}).items()):
        if not isinstance(tune, dict):
            continue
        for i, exc in enumerate(normalized_exceptions(tune.get("exceptions"))):
            if exc.get("expires") and str(exc["expires"]) < today:
                lines.append(f"warning: detectors.{det_id}.exceptions[{i}] expired on "
                             f"{exc['expires']} ({exc.get('reason')}): it no longer suppresses; "
                             "renew expires or remove it")
    return "".join(line + "\n" for line in lines)
