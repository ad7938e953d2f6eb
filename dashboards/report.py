"""The self-contained auditor report (`report.html`) of one keytrail run.

`render_report` is a pure function of the run's derived records: the inventory with NIST
SP 800-57 states, rotation compliance against cryptoperiods, per-key lifecycle timelines,
a server-side SVG of the usage graph, the alerts and key -> resource edges. The document
needs no network (inline CSS/JS pinned by a Content-Security-Policy hash), escapes every
value taken from logs, and is byte-identical for identical input.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, Final

from dashboards.exports import PROVIDER_NAMES, ephemeral_summary
from parsers.escaping import html_text

# Caps keep a 10k-key report a few MB; the exports (CSV/JSON/CBOM) always carry everything.
MAX_INVENTORY_ROWS: Final[int] = 2000
MAX_ROTATION_ROWS: Final[int] = 1000
MAX_TIMELINE_KEYS: Final[int] = 300
MAX_TRANSITIONS_PER_KEY: Final[int] = 100
TIMELINES_OPEN: Final[int] = 3  # the first eventful timelines start expanded
MAX_GRAPH_EDGES: Final[int] = 40
MAX_GRAPH_TABLE_ROWS: Final[int] = 200
MAX_ALERTS: Final[int] = 500
MAX_ALERT_EVIDENCE: Final[int] = 20
MAX_RESOURCE_ROWS: Final[int] = 200
MAX_FILE_ROWS: Final[int] = 200
MAX_INPUTS_LISTED: Final[int] = 20
LABEL_CHARS: Final[int] = 40

ASSETS: Final[Path] = Path(__file__).parent / "report_assets"

STATE_BADGE: Final[dict[str, str]] = {
    "pre-activation": "b-info", "active": "b-ok", "suspended": "b-warn",
    "deactivated": "b-gray", "compromised": "b-bad", "destroyed": "b-dark",
}
STATE_COLOR: Final[dict[str, str]] = {
    "pre-activation": "#1f5aa8", "active": "#1e7b45", "suspended": "#c98a00",
    "deactivated": "#7a828e", "compromised": "#b3261e", "destroyed": "#2b2f36",
}
ROTATION_BADGE: Final[dict[str, tuple[str, str]]] = {
    "within_cryptoperiod": ("b-ok", "within cryptoperiod"),
    "overdue": ("b-bad", "overdue"),
    "overdue_lower_bound": ("b-out", "overdue (lower bound)"),
    "not_evaluated": ("b-gray", "not evaluated"),
}
SEVERITY_ORDER: Final[tuple[str, ...]] = ("critical", "high", "medium", "low")
SEVERITY_BADGE: Final[dict[str, str]] = {
    "critical": "b-crit", "high": "b-high", "medium": "b-med", "low": "b-low",
}
OVERDUE: Final[frozenset[str]] = frozenset({"overdue", "overdue_lower_bound"})

Record = dict[str, Any]


# --- small formatting helpers ------------------------------------------------------------

def _e(value: Any) -> str:
    """HTML-escape anything (log content is attacker-controlled): parsers/escaping.py."""
    return html_text(value)


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _ts(value: Any, short: bool = False) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM:SS` (or `HH:MM` when short); full value on hover."""
    if not value:
        return '<span class="sub">—</span>'
    s = str(value)
    shown = s
    if len(s) >= 19 and s[10:11] == "T":
        shown = s[:16 if short else 19].replace("T", " ")
    return f'<time title="{_e(s)}">{_e(shown)}</time>'


def _key_cell(rec: Record, labels: dict[str, str]) -> str:
    uid = str(rec.get("uid") or "")
    label = labels.get(uid) or key_label(rec)
    return (f'<td class="key" data-sort="{_e(label.lower())}"><div class="kname">{_e(label)}'
            f'</div><div class="uid">{_e(uid)}</div></td>')


def _clip(text: str, limit: int = LABEL_CHARS) -> str:
    """Shorten for the picture, keeping the distinctive tail of ARNs and URLs."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _badge(cls: str, text: str, title: str | None = None) -> str:
    t = f' title="{_e(title)}"' if title else ""
    return f'<span class="badge {cls}"{t}>{_e(text)}</span>'


def state_badge(state: Any, substate: Any = None) -> str:
    s = str(state) if state else "unknown"
    out = _badge(STATE_BADGE.get(s, "b-gray"), s)
    if substate:
        out += f'<span class="substate">{_e(substate)}</span>'
    return out


def _rotation(rec: Record) -> Record:
    rot = rec.get("rotation")
    return rot if isinstance(rot, dict) else {}


def rotation_badge(rot: Record) -> str:
    status = str(rot.get("status") or "not_evaluated")
    cls, text = ROTATION_BADGE.get(status, ("b-gray", status))
    days = rot.get("overdue_days") or 0
    if status in OVERDUE and days:
        text = f"overdue {'≥' if status == 'overdue_lower_bound' else ''}{days:,} d"
    title = None
    if status == "overdue_lower_bound":
        title = "creation was not observed: the overdue days are a lower bound"
    return _badge(cls, text, title)


def _prov(path: Any, offset: Any) -> str:
    if not path and offset is None:
        return '<span class="sub">—</span>'
    return f'<span class="prov">{_e(path)}@{_e(offset)}</span>'


def key_label(rec: Record) -> str:
    aliases = rec.get("aliases") or []
    if aliases:
        return str(sorted(aliases)[0])
    if rec.get("name"):
        return str(rec["name"])
    uid = str(rec.get("uid") or "")
    return uid.rsplit("/", 1)[-1] or uid


def principal_label(principal: str, name: str | None) -> str:
    if name:
        return name
    tail = principal.rsplit("/", 1)[-1]
    return tail or principal


def _last_used(rec: Record) -> tuple[str | None, str | None]:
    used = rec.get("last_used") or {}
    if not isinstance(used, dict) or not used:
        return None, None
    if used.get("crypto"):
        return str(used["crypto"]), "crypto"
    cls, ts = max(((str(k), str(v)) for k, v in used.items() if v), key=lambda kv: (kv[1], kv[0]),
                  default=(None, None))
    return ts, cls


def _cap_note(shown: int, total: int, what: str, where: str) -> str:
    if total <= shown:
        return ""
    return (f'<p class="note cap">Showing {shown:,} of {total:,} {_e(what)}; '
            f"{_e(where)}</p>")


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _table(head: list[tuple[str, str]], rows: Iterable[str], *, table_id: str | None = None,
           sortable: bool = True, scroll: bool = True) -> str:
    """A table; head items are (label, kind) with kind '' | 'num' | 'nosort'."""
    ths = []
    for label, kind in head:
        attrs = ""
        if kind == "num":
            attrs = ' class="num" data-type="num"'
        elif kind == "nosort":
            attrs = " data-nosort"
        ths.append(f"<th{attrs}>{_e(label)}</th>")
    tid = f' id="{_e(table_id)}"' if table_id else ""
    cls = ' class="sortable"' if sortable else ""
    body = "\n".join(rows)
    table = (f"<table{tid}{cls}><thead><tr>{''.join(ths)}</tr></thead>\n"
             f"<tbody>\n{body}\n</tbody></table>")
    return f'<div class="scroll">{table}</div>' if scroll else table


def _filter_box(target: str, placeholder: str, total: int) -> str:
    count_id = f"{target}-count"
    return (f'<div class="toolbar"><input type="search" placeholder="{_e(placeholder)}" '
            f'aria-label="{_e(placeholder)}" data-filter="{_e(target)}" '
            f'data-count="{_e(count_id)}"><span class="count" id="{_e(count_id)}">'
            f"{total:,} shown</span></div>")


def _stat(value: Any, label: str, tone: str = "") -> str:
    return (f'<div class="stat {_e(tone)}"><div class="n">{_n(value)}</div>'
            f'<div class="l">{_e(label)}</div></div>')


# --- sections ----------------------------------------------------------------------------

def _as_of(summary: Record, inventory: list[Record]) -> str:
    if summary.get("as_of"):
        return str(summary["as_of"])
    stamps = sorted(str(r["as_of"]) for r in inventory if r.get("as_of"))
    return stamps[-1] if stamps else "unknown"


def _sum_counts(value: Any) -> int:
    if isinstance(value, dict):
        return sum(int(v) for v in value.values() if isinstance(v, int))
    return int(value) if isinstance(value, int) else 0


def _scope_section(summary: Record, inventory: list[Record], alerts: list[Record],
                   edges: list[Record]) -> str:
    files = [f for f in summary.get("files") or [] if isinstance(f, dict)]
    files.sort(key=lambda f: (str(f.get("path")), str(f.get("dataset"))))
    inputs = summary.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        inputs = sorted({str(f.get("path")) for f in files})
    inputs = [str(i) for i in inputs]
    totals = summary.get("totals") if isinstance(summary.get("totals"), dict) else {}
    assert isinstance(totals, dict)
    quarantined = _sum_counts(totals.get("quarantined")) if totals else sum(
        _sum_counts(f.get("quarantined")) for f in files)
    skipped = _sum_counts(totals.get("skipped")) if totals else sum(
        _sum_counts(f.get("skipped")) for f in files)
    records_in = totals.get("records_in") if totals else sum(
        int(f.get("records_in") or 0) for f in files)
    events = totals.get("events") if totals else sum(int(f.get("events") or 0) for f in files)

    per_ds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for f in files:
        row = per_ds[str(f.get("dataset") or "unknown")]
        row[0] += 1
        row[1] += int(f.get("records_in") or 0)
        row[2] += int(f.get("events") or 0)
        row[3] += _sum_counts(f.get("skipped"))
        row[4] += _sum_counts(f.get("quarantined"))
    ds_rows = [
        f'<tr><td class="mono">{_e(ds)}</td>' + "".join(f'<td class="num">{v:,}</td>' for v in vals)
        + "</tr>"
        for ds, vals in sorted(per_ds.items())
    ]
    num = "num"
    ds_table = _table([("Dataset", ""), ("Files", num), ("Records in", num), ("Events", num),
                       ("Skipped", num), ("Quarantined", num)], ds_rows, scroll=False) if ds_rows \
        else '<p class="empty">No input files recorded in run_summary.json.</p>'

    listed = "".join(f"<li class=\"mono\">{_e(i)}</li>" for i in inputs[:MAX_INPUTS_LISTED])
    if len(inputs) > MAX_INPUTS_LISTED:
        listed += f"<li>… and {len(inputs) - MAX_INPUTS_LISTED:,} more</li>"

    file_rows = []
    for f in files[:MAX_FILE_ROWS]:
        reasons = {**{f"skipped: {k}": v for k, v in (f.get("skipped") or {}).items()},
                   **{f"quarantined: {k}": v for k, v in (f.get("quarantined") or {}).items()}}
        if f.get("duplicates"):
            reasons["duplicates (counted once)"] = f["duplicates"]
        detail = ", ".join(f"{_e(k)} {_n(v)}" for k, v in sorted(reasons.items()))
        file_rows.append(
            f'<tr><td class="prov">{_e(f.get("path"))}</td><td class="mono">{_e(f.get("dataset"))}'
            f'</td><td class="num">{_n(f.get("records_in") or 0)}</td>'
            f'<td class="num">{_n(f.get("events") or 0)}</td>'
            f'<td class="num">{_sum_counts(f.get("skipped")):,}</td>'
            f'<td class="num">{_sum_counts(f.get("quarantined")):,}</td>'
            f'<td class="sub">{detail}</td></tr>')
    files_html = ""
    if files:
        files_html = (
            f'<details class="tl"><summary>Per-file accounting ({len(files):,} files: records in '
            "= events + duplicates + skipped + quarantined)</summary>"
            + _table([("File", ""), ("Dataset", ""), ("Records in", num), ("Events", num),
                      ("Skipped", num), ("Quarantined", num), ("Reasons", "nosort")],
                     file_rows, scroll=False)
            + _cap_note(len(file_rows), len(files), "files", "see run_summary.json for all.")
            + "</details>")

    states: dict[str, int] = defaultdict(int)
    for r in inventory:
        states[str(r.get("state") or "unknown")] += 1
    overdue = sum(1 for r in inventory if _rotation(r).get("status") in OVERDUE)
    sev: dict[str, int] = defaultdict(int)
    for a in alerts:
        sev[str(a.get("keytrail.alert.severity") or "low")] += 1
    principals = {str(e.get("principal")) for e in edges}
    cards = "".join([
        _stat(len(inventory), "keys"),
        _stat(states.get("active", 0), "active", "ok"),
        _stat(overdue, "rotation overdue", "bad" if overdue else "ok"),
        _stat(len(principals), "principals"),
        _stat(len(edges), "usage edges"),
        _stat(len(alerts), "alerts", "bad" if sev.get("critical") or sev.get("high") else "gray"),
        _stat(quarantined, "quarantined records", "warn" if quarantined else "ok"),
    ])
    state_line = " ".join(
        f"{state_badge(s)} {n:,}" for s, n in sorted(states.items())) or "—"
    sev_line = " ".join(
        f"{_badge(SEVERITY_BADGE.get(s, 'b-gray'), s)} {sev[s]:,}"
        for s in [*SEVERITY_ORDER, *sorted(set(sev) - set(SEVERITY_ORDER))] if sev.get(s)) or "—"
    return f"""<div class="cards">{cards}</div>
<section class="card" id="scope"><h2>Run scope</h2>
<p class="lead">What this report was built from. Every record read is accounted for as an
event, a deliberately skipped record or a quarantined record.</p>
<div class="grid2"><div><dl class="kv">
<dt>As of</dt><dd>{_e(_as_of(summary, inventory))}</dd>
<dt>Inputs</dt><dd><ul class="inputs">{listed or "<li>—</li>"}</ul></dd>
<dt>Records in</dt><dd>{_n(records_in or 0)}</dd>
<dt>Events</dt><dd>{_n(events or 0)}</dd>
<dt>Skipped (out of scope)</dt><dd>{skipped:,}</dd>
<dt>Quarantined</dt><dd>{quarantined:,}</dd>
<dt>Keys by state</dt><dd>{state_line}</dd>
<dt>Alerts by severity</dt><dd>{sev_line}</dd>
</dl></div><div><h3>Records per dataset</h3>{ds_table}</div></div>
{files_html}
</section>"""


def _ephemeral_block(summary: list[Record]) -> str:
    if not summary:
        return ""
    rows = [f'<tr data-row><td data-sort="{_e(r["day"])}">{_e(r["day"])}</td>'
            f'<td class="prov">{_e(r["scope"])}</td><td class="mono">{_e(r["application"])}</td>'
            f'<td class="num" data-sort="{int(r["count"])}">{int(r["count"]):,}</td>'
            f'<td class="num" data-sort="{r["lifetime_median_s"]:.3f}">'
            f'{r["lifetime_min_s"]:.0f} / {r["lifetime_median_s"]:.0f} / '
            f'{r["lifetime_max_s"]:.0f}</td></tr>' for r in summary]
    total = sum(int(r["count"]) for r in summary)
    return (f'<h3>Session (ephemeral) keys</h3><p class="lead">{total:,} keys created and '
            "destroyed (or never seen again) by one application within a day (PKCS#11 "
            "session objects and similar), summarised per scope, application and day rather "
            "than listed: "
            "<code>keytrail inventory --include-ephemeral</code> lists each.</p>"
            + _table([("Day", ""), ("Scope", ""), ("Application", ""), ("Keys", "num"),
                      ("Lifetime s (min / median / max)", "num")], rows,
                     table_id="ephemeral-table"))


def _inventory_section(inventory: list[Record], labels: dict[str, str]) -> str:
    if not inventory:
        return ('<section class="card" id="inventory"><h2>Key inventory</h2>'
                '<p class="empty">No keys were observed in the input.</p></section>')
    ephemeral = ephemeral_summary(inventory)
    inventory = [r for r in inventory if r.get("key_class") != "ephemeral"]
    rows = []
    for r in inventory[:MAX_INVENTORY_ROWS]:
        rot = _rotation(r)
        last, cls = _last_used(r)
        used = r.get("last_used") or {}
        used_title = "; ".join(f"{k}: {v}" for k, v in sorted(used.items())) if isinstance(
            used, dict) else ""
        extra = []
        if rot.get("eligible") is False:
            extra.append(_badge("b-gray", "not eligible", str(rot.get("eligibility_reason") or "")))
        elif rot.get("eligible") and rot.get("enabled") is False:
            extra.append(_badge("b-warn", "auto-rotation off"))
        kind_sub = " · ".join(str(x) for x in (r.get("purpose"), r.get("spec")) if x)
        status_sort = f"{int(rot.get('overdue_days') or 0):08d}|{rot.get('status') or ''}"
        last_html = _ts(last, short=True) + (
            f'<div class="sub">{_e(cls)}</div>' if cls and cls != "crypto" else "")
        provider = str(r.get("provider") or "")
        rows.append(
            f'<tr data-row>{_key_cell(r, labels)}'
            f'<td data-sort="{_e(provider)}" title="{_e(provider)}">'
            f'{_e(PROVIDER_NAMES.get(provider, provider))}</td>'
            f'<td>{_e(r.get("kind"))}<div class="sub">{_e(kind_sub)}</div></td>'
            f'<td data-sort="{_e(r.get("state"))}|{_e(r.get("substate") or "")}">'
            f'{state_badge(r.get("state"), r.get("substate"))}</td>'
            f'<td data-sort="{_e(r.get("created_at") or "")}">'
            f'{_ts(r.get("created_at"), short=True)}'
            f'<div class="sub">{_e(r.get("created_by") or "")}</div></td>'
            f'<td data-sort="{_e(last or "")}" title="{_e(used_title)}">{last_html}</td>'
            f'<td class="num" data-sort="{int(r.get("principal_count") or 0)}">'
            f'{int(r.get("principal_count") or 0):,}</td>'
            f'<td data-sort="{_e(status_sort)}">{rotation_badge(rot)} {" ".join(extra)}</td></tr>')
    num = "num"
    table = _table([("Key", ""), ("Provider", ""), ("Kind", ""), ("State", ""),
                    ("Created (by)", ""), ("Last used", ""), ("Principals", num),
                    ("Rotation", "")], rows, table_id="inventory-table")
    return f"""<section class="card" id="inventory"><h2>Key inventory</h2>
<p class="lead">One row per key identity (keytrail.key.uid) with its NIST SP 800-57 state derived
from the lifecycle events in the logs. Click a column to sort; the box filters on any text.</p>
{_filter_box("inventory-table", "Filter keys: alias, uid, provider, state…", len(rows))}
{table}
{_cap_note(len(rows), len(inventory), "keys", "the full inventory is in the CSV, JSON and "
           "CycloneDX exports (keytrail inventory --format csv|json|cyclonedx).")}
{_ephemeral_block(ephemeral)}
</section>"""


def _compliance_bar(parts: list[tuple[int, str, str]]) -> str:
    total = sum(n for n, _, _ in parts)
    if not total:
        return ""
    x = 0.0
    rects = []
    for n, color, label in parts:
        if not n:
            continue
        w = 1000.0 * n / total
        rects.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{color}">'
                     f"<title>{_e(label)}: {n:,} ({100.0 * n / total:.1f}%)</title></rect>")
        x += w
    return (f'<svg class="bar" viewBox="0 0 1000 28" preserveAspectRatio="none" role="img" '
            f'aria-label="rotation compliance">{"".join(rects)}</svg>')


def _rotation_section(inventory: list[Record], labels: dict[str, str]) -> str:
    rots = [(r, _rotation(r)) for r in inventory]
    evaluated = [(r, x) for r, x in rots if x.get("status") not in (None, "not_evaluated")]
    within = sum(1 for _, x in evaluated if x.get("status") == "within_cryptoperiod")
    overdue = sum(1 for _, x in evaluated if x.get("status") in OVERDUE)
    lower = sum(1 for _, x in evaluated if x.get("status") == "overdue_lower_bound")
    never = sum(1 for _, x in evaluated if not x.get("rotation_count"))
    disabled = [(r, x) for r, x in rots if x.get("eligible") and x.get("enabled") is False]
    unknown = sum(1 for _, x in rots if x.get("eligible") and x.get("enabled") is None)
    not_eligible = [(r, x) for r, x in rots if x.get("eligible") is False]
    not_evaluated = len(rots) - len(evaluated)
    cards = "".join([
        _stat(len(evaluated), "keys with a cryptoperiod"),
        _stat(within, "within cryptoperiod", "ok"),
        _stat(overdue, "overdue", "bad" if overdue else "ok"),
        _stat(never, "never rotated", "warn" if never else "ok"),
        _stat(len(disabled), "rotation disabled (eligible)", "bad" if disabled else "ok"),
        _stat(len(not_eligible), "not eligible for auto-rotation", "gray"),
    ])
    bar = _compliance_bar([(within, "#2e9d5b", "within cryptoperiod"),
                           (overdue, "#c0392b", "overdue"),
                           (not_evaluated, "#c5ccd6", "not evaluated")])
    notes = []
    if lower:
        notes.append(f"{lower:,} overdue key(s) were created before the logs begin: their "
                     "overdue days are a lower bound.")
    if unknown:
        notes.append(f"{unknown:,} eligible key(s) have no rotation setting in the logs "
                     "(neither enabled nor disabled was observed).")
    notes_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)

    table_rows = []
    ordered = sorted(evaluated, key=lambda rx: (
        -int(rx[1].get("overdue_days") or 0), str(rx[1].get("next_due") or ""), str(rx[0]["uid"])))
    for r, x in ordered[:MAX_ROTATION_ROWS]:
        enabled = x.get("enabled")
        enabled_txt = ("enabled" if enabled else "disabled") if isinstance(enabled, bool) \
            else "not observed"
        if x.get("period_days"):
            enabled_txt += f" ({x['period_days']} d)"
        interval = x.get("observed_interval_days")
        rotations = int(x.get("rotation_count") or 0)
        rot_sub = f"~{interval} d apart" if interval is not None else ""
        baseline_kind = "last rotated" if x.get("last_rotated_at") else "created / first seen"
        table_rows.append(
            f'<tr data-row>{_key_cell(r, labels)}'
            f'<td data-sort="{_e(x.get("status"))}">{rotation_badge(x)}</td>'
            f'<td class="num" data-sort="{int(x.get("overdue_days") or 0)}">'
            f'{int(x.get("overdue_days") or 0):,}</td>'
            f'<td data-sort="{_e(x.get("policy"))}"><span class="pol">{_e(x.get("policy"))}'
            f'</span><div class="sub">{_e(x.get("policy_source"))}</div></td>'
            f'<td class="num" data-sort="{_e(x.get("cryptoperiod_days") or 0)}">'
            f'{_n(x.get("cryptoperiod_days"))}</td>'
            f'<td data-sort="{_e(x.get("baseline") or "")}">{_ts(x.get("baseline"), short=True)}'
            f'<div class="sub">{baseline_kind}</div></td>'
            f'<td data-sort="{_e(x.get("next_due") or "")}">{_ts(x.get("next_due"), short=True)}'
            f'</td><td class="num" data-sort="{rotations}">{rotations:,}'
            f'<div class="sub">{_e(rot_sub)}</div></td>'
            f'<td>{_e(enabled_txt)}</td></tr>')
    num = "num"
    table = _table([("Key", ""), ("Status", ""), ("Overdue days", num), ("Policy applied", ""),
                    ("Cryptoperiod (d)", num), ("Baseline", ""), ("Next due", ""),
                    ("Rotations", num), ("Auto-rotation", "")], table_rows,
                   table_id="rotation-table") \
        if table_rows else '<p class="empty">No key has a cryptoperiod to evaluate.</p>'

    disabled_rows = [
        f'<tr><td><div class="kname">{_e(labels.get(r["uid"], ""))}</div>'
        f'<div class="uid">{_e(r["uid"])}</div></td><td class="mono">{_e(r.get("provider"))}</td>'
        f'<td>{_e(x.get("eligibility_reason"))}</td><td>{_ts(x.get("next_due"))}</td></tr>'
        for r, x in sorted(disabled, key=lambda rx: str(rx[0]["uid"]))[:MAX_ROTATION_ROWS]]
    disabled_html = _table([("Key", ""), ("Provider", ""), ("Why eligible", ""), ("Next due", "")],
                           disabled_rows, scroll=False, sortable=False) if disabled_rows else \
        '<p class="empty">None: every eligible key with an observed setting rotates.</p>'

    reasons: dict[str, list[str]] = defaultdict(list)
    for r, x in not_eligible:
        reasons[str(x.get("eligibility_reason") or "unknown")].append(str(r["uid"]))
    reason_rows = [
        f'<tr><td>{_e(reason)}</td><td class="num">{len(uids):,}</td><td class="uid">'
        + "<br>".join(_e(u) for u in sorted(uids)[:3])
        + (f"<br>… {len(uids) - 3:,} more" if len(uids) > 3 else "") + "</td></tr>"
        for reason, uids in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    reason_html = _table([("Reason", ""), ("Keys", "num"), ("Examples", "")], reason_rows,
                         scroll=False, sortable=False) if reason_rows else \
        '<p class="empty">Every key can be rotated automatically by its provider.</p>'

    policies: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for _, x in rots:
        if x.get("policy"):
            k = (str(x.get("policy")), str(x.get("policy_source") or ""),
                 str(x.get("cryptoperiod_days") if x.get("cryptoperiod_days") is not None
                     else "none"))
            policies[k][0] += 1
            policies[k][1] += 1 if x.get("status") in OVERDUE else 0
    policy_rows = [
        f'<tr><td class="mono">{_e(p)}</td><td>{_e(src)}</td><td class="num">{_e(days)}</td>'
        f'<td class="num">{n:,}</td><td class="num">{o:,}</td></tr>'
        for (p, src, days), (n, o) in sorted(policies.items())]
    policy_html = _table([("Policy", ""), ("Source", ""), ("Cryptoperiod (d)", "num"),
                          ("Keys", "num"), ("Overdue", "num")], policy_rows, scroll=False,
                         sortable=False) if policy_rows else '<p class="empty">—</p>'
    return f"""<section class="card" id="rotation"><h2>Rotation compliance</h2>
<p class="lead">Each key's last rotation (or creation) against the cryptoperiod that applies to
it (NIST SP 800-57 Pt1 Table 1, provider defaults, or configured policy). Keys whose provider
cannot rotate them automatically (asymmetric, HMAC, imported material, custom key stores, HSM
keys) are reported as not eligible, never as "rotation disabled".</p>
<div class="cards">{cards}</div>
{bar}
<div class="legend"><span><span class="sq ok"></span>within cryptoperiod {within:,}</span>
<span><span class="sq bad"></span>overdue {overdue:,}</span>
<span><span class="sq na"></span>not evaluated {not_evaluated:,}</span></div>
{notes_html}
<h3>Rotation status by key (most overdue first)</h3>
{_filter_box("rotation-table", "Filter: key, policy, status…", len(table_rows))
 if table_rows else ""}
{table}
{_cap_note(len(table_rows), len(evaluated), "evaluated keys", "see the inventory exports.")}
<div class="grid2"><div><h3>Automatic rotation disabled on eligible keys</h3>{disabled_html}
</div><div><h3>Not eligible for automatic rotation</h3>{reason_html}</div></div>
<h3>Cryptoperiod policies applied</h3>{policy_html}
</section>"""


def _rotated_note(rot: Record) -> str:
    n = int(rot.get("rotation_count") or 0)
    if not n:
        return ""
    return f" · rotated {n:,}× (last {_e(str(rot.get('last_rotated_at') or '')[:10])})"


def _timeline_section(inventory: list[Record], labels: dict[str, str]) -> str:
    with_history = [r for r in inventory if r.get("transitions")]
    # Keys whose life had more than a creation come first: that is where auditors look.
    with_history.sort(key=lambda r: (0 if len(r["transitions"]) > 1 or r.get("state") != "active"
                                     else 1, str(r["uid"])))
    blocks = []
    for i, r in enumerate(with_history[:MAX_TIMELINE_KEYS]):
        eventful = len(r["transitions"]) > 1 or r.get("state") != "active"
        opened = " open" if eventful and i < TIMELINES_OPEN else ""
        trs = r["transitions"]
        rows = []
        for t in trs[:MAX_TRANSITIONS_PER_KEY]:
            frm = state_badge(t.get("from")) if t.get("from") else '<span class="sub">(new)</span>'
            rows.append(
                f'<tr><td>{_ts(t.get("at"))}</td><td>{frm}<span class="arrow">→</span>'
                f'{state_badge(t.get("to"), t.get("substate"))}</td>'
                f'<td class="mono">{_e(t.get("operation"))}</td><td><code>{_e(t.get("action"))}'
                f'</code></td><td class="sub">{_e(t.get("by") or "—")}</td>'
                f'<td>{_prov(t.get("log_file_path"), t.get("log_offset"))}'
                f'<div class="sub">{_e(t.get("event_id") or "")}</div></td></tr>')
        more = _cap_note(len(rows), len(trs), "transitions", "the inventory JSON has them all.")
        blocks.append(
            f'<details class="tl" data-row{opened}><summary><span class="kname">'
            f'{_e(labels[r["uid"]])}</span>{state_badge(r.get("state"), r.get("substate"))}'
            '<span class="uid">'
            f'{_e(r["uid"])}</span><span class="sub">{len(trs):,} transition'
            f'{"s" if len(trs) != 1 else ""} · last {_e(str(trs[-1].get("at") or "")[:10])}'
            f"{_rotated_note(_rotation(r))}</span></summary>"
            + _table([("Time", ""), ("From → to", ""), ("Operation", ""), ("Action", ""),
                      ("By", ""), ("Evidence (log.file.path@log.offset)", "")], rows,
                     scroll=False, sortable=False).replace("<table>", '<table class="tlt">', 1)
            + more + "</details>")
    quiet = len(inventory) - len(with_history)
    quiet_note = (f'<p class="note">{quiet:,} key(s) have no lifecycle event in the logs; their '
                  "state is inferred from use.</p>" if quiet else "")
    body = "\n".join(blocks) if blocks else \
        '<p class="empty">No lifecycle transitions were observed.</p>'
    tools = ""
    if blocks:
        tools = (_filter_box("timelines", "Filter timelines: key, action, principal…", len(blocks))
                 .replace('<div class="toolbar">', '<div class="toolbar">'
                          '<button type="button" data-expand="open" data-target="timelines">'
                          'Expand all</button><button type="button" data-expand="close" '
                          'data-target="timelines">Collapse all</button>', 1))
    return f"""<section class="card" id="timeline"><h2>Per-key lifecycle timeline</h2>
<p class="lead">Every state transition with the event that caused it, who did it, and the exact
source record (log.file.path@log.offset) an auditor can pull.</p>
{tools}
<div id="timelines">{body}</div>
{_cap_note(len(blocks), len(with_history), "keys with transitions",
           "the inventory JSON export carries every key's history.")}
{quiet_note}
</section>"""


def _aggregate_edges(edges: list[Record]) -> list[Record]:
    agg: dict[tuple[str, str], Record] = {}
    for e in edges:
        k = (str(e.get("principal")), str(e.get("key_uid")))
        a = agg.get(k)
        if a is None:
            a = agg[k] = {"principal": k[0], "key_uid": k[1], "count": 0, "failures": 0,
                          "cross_account": False, "ops": defaultdict(int), "ips": set(),
                          "first_seen": None, "last_seen": None, "principal_name": None}
        n = int(e.get("count") or 0)
        a["count"] += n
        a["failures"] += int(e.get("failures") or 0)
        a["cross_account"] = a["cross_account"] or bool(e.get("cross_account"))
        a["ops"][str(e.get("operation"))] += n
        a["ips"].update(str(i) for i in e.get("source_ips") or [])
        for field, pick in (("first_seen", min), ("last_seen", max)):
            v = e.get(field)
            if v:
                a[field] = v if a[field] is None else pick(a[field], v)
        name = e.get("principal_name")
        if name and (a["principal_name"] is None or name < a["principal_name"]):
            a["principal_name"] = name
    return sorted(agg.values(), key=lambda a: (-a["count"], a["principal"], a["key_uid"]))


def usage_graph_svg(agg: list[Record], labels: dict[str, str], states: dict[str, str]) -> str:
    """Bipartite principal -> key picture, laid out deterministically (no JS)."""
    top = agg[:MAX_GRAPH_EDGES]
    p_total: dict[str, int] = defaultdict(int)
    p_name: dict[str, str | None] = {}
    for a in top:
        p_total[a["principal"]] += a["count"]
        p_name.setdefault(a["principal"], a["principal_name"])
    principals = sorted(p_total, key=lambda p: (-p_total[p], p))
    p_pos = {p: i for i, p in enumerate(principals)}
    # Keys ordered by the mean row of their principals (barycentre): fewer crossings.
    k_rows: dict[str, list[int]] = defaultdict(list)
    for a in top:
        k_rows[a["key_uid"]].append(p_pos[a["principal"]])
    keys = sorted(k_rows, key=lambda k: (sum(k_rows[k]) / len(k_rows[k]), k))
    rows = max(len(principals), len(keys), 1)
    row_h, top_y, width = 28, 44, 1100
    height = top_y + rows * row_h + 12
    lx, rx = 380, 720
    p_y = {p: top_y + i * row_h + row_h / 2 for i, p in enumerate(principals)}
    k_y = {k: top_y + i * row_h + row_h / 2 for i, k in enumerate(keys)}
    # Centre the shorter column.
    if len(principals) < rows:
        off = (rows - len(principals)) * row_h / 2
        p_y = {p: y + off for p, y in p_y.items()}
    if len(keys) < rows:
        off = (rows - len(keys)) * row_h / 2
        k_y = {k: y + off for k, y in k_y.items()}
    parts = [f'<svg class="graph" id="usage-graph" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" '
             'aria-label="principal to key usage graph" xmlns="http://www.w3.org/2000/svg">',
             f'<text class="hdr" x="{lx - 14}" y="24" text-anchor="end">PRINCIPALS</text>',
             f'<text class="hdr" x="{rx + 14}" y="24">KEYS</text>']
    for a in sorted(top, key=lambda a: (a["cross_account"] or a["failures"] > 0, a["count"],
                                        a["principal"], a["key_uid"])):
        y1, y2 = p_y[a["principal"]], k_y[a["key_uid"]]
        w = min(10.0, 1.2 + 1.6 * math.log10(max(1, a["count"])))
        red = a["cross_account"] or a["failures"] > 0
        ops = ", ".join(f"{op} {n:,}" for op, n in sorted(a["ops"].items()))
        flags = (" · cross-account" if a["cross_account"] else "") + (
            f" · {a['failures']:,} failures" if a["failures"] else "")
        mid = (lx + rx) / 2
        parts.append(
            f'<path class="e{" red" if red else ""}" stroke-width="{w:.2f}" '
            f'd="M{lx} {y1:.1f} C{mid:.1f} {y1:.1f} {mid:.1f} {y2:.1f} {rx} {y2:.1f}">'
            f"<title>{_e(a['principal'])} → {_e(a['key_uid'])}: {a['count']:,} operations "
            f"({_e(ops)}){_e(flags)}</title></path>")
    for p in principals:
        y = p_y[p]
        label = _clip(principal_label(p, p_name.get(p)))
        parts.append(
            f'<g><title>{_e(p)}: {p_total[p]:,} operations</title>'
            f'<circle cx="{lx}" cy="{y:.1f}" r="5" fill="#2454a6"/>'
            f'<text x="{lx - 12}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text></g>')
    for k in keys:
        y = k_y[k]
        label = _clip(labels.get(k) or k)
        color = STATE_COLOR.get(states.get(k, ""), "#7a828e")
        parts.append(
            f'<g><title>{_e(k)} ({_e(states.get(k, "not in inventory"))})</title>'
            f'<rect x="{rx - 5}" y="{y - 5:.1f}" width="10" height="10" rx="2" fill="{color}"/>'
            f'<text x="{rx + 12}" y="{y + 4:.1f}">{_e(label)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def _graph_section(edges: list[Record], inventory: list[Record], labels: dict[str, str]) -> str:
    agg = _aggregate_edges(edges)
    if not agg:
        return ('<section class="card" id="graph"><h2>Usage graph</h2>'
                '<p class="empty">No principal used any key in the input.</p></section>')
    states = {str(r["uid"]): str(r.get("state") or "") for r in inventory}
    svg = usage_graph_svg(agg, labels, states)
    total_ops = sum(a["count"] for a in agg)
    shown = min(len(agg), MAX_GRAPH_EDGES)
    cap = (f'<p class="note cap">The picture shows the top {shown:,} of {len(agg):,} '
           "principal→key pairs by operation count; the table below and the edge exports list "
           "more.</p>" if len(agg) > shown else "")
    rows = []
    for a in agg[:MAX_GRAPH_TABLE_ROWS]:
        ops = ", ".join(f"{op} {n:,}" for op, n in sorted(a["ops"].items()))
        ips = sorted(a["ips"])
        ip_txt = ", ".join(ips[:5]) + (f" (+{len(ips) - 5})" if len(ips) > 5 else "")
        flags = []
        if a["cross_account"]:
            flags.append(_badge("b-bad", "cross-account"))
        if a["failures"]:
            flags.append(_badge("b-warn", f"{a['failures']:,} failed"))
        plabel = principal_label(a["principal"], a["principal_name"])
        klabel = labels.get(a["key_uid"]) or a["key_uid"]
        rows.append(
            f'<tr data-row><td data-sort="{_e(plabel.lower())}"><div class="kname">{_e(plabel)}'
            f'</div><div class="uid">{_e(a["principal"])}</div></td>'
            f'<td data-sort="{_e(klabel.lower())}">'
            f'<div class="kname">{_e(labels.get(a["key_uid"], ""))}</div>'
            f'<div class="uid">{_e(a["key_uid"])}</div></td>'
            f'<td class="sub">{_e(ops)}</td><td class="num" data-sort="{a["count"]}">'
            f'{a["count"]:,}</td><td class="num" data-sort="{a["failures"]}">'
            f'{a["failures"]:,}</td><td>{" ".join(flags)}</td>'
            f'<td data-sort="{_e(a["first_seen"] or "")}">{_ts(a["first_seen"])}</td>'
            f'<td data-sort="{_e(a["last_seen"] or "")}">{_ts(a["last_seen"])}</td>'
            f'<td class="sub">{_e(ip_txt)}</td></tr>')
    num = "num"
    table = _table([("Principal", ""), ("Key", ""), ("Operations", ""), ("Count", num),
                    ("Failures", num), ("Flags", ""), ("First seen", ""), ("Last seen", ""),
                    ("Source IPs", "")], rows, table_id="edges-table")
    principals = len({a["principal"] for a in agg})
    keys = len({a["key_uid"] for a in agg})
    return f"""<section class="card" id="graph"><h2>Usage graph</h2>
<p class="lead">Who used which key: {principals:,} principals, {keys:,} keys, {len(agg):,}
principal→key pairs, {total_ops:,} operations (all windows and operations combined).</p>
<div class="legend"><span><span class="dot"></span>principal</span>
<span><span class="dot key"></span>key (colour = state)</span>
<span><span class="sw"></span>usage (width ∝ log count)</span>
<span><span class="sw red"></span>cross-account or with failures</span></div>
{cap}
{svg}
<h3>Principal → key pairs</h3>
{_filter_box("edges-table", "Filter: principal, key, operation, IP…", len(rows))}
{table}
{_cap_note(len(rows), len(agg), "pairs", "the graph edge exports carry all of them.")}
</section>"""


def _technique_text(value: Any) -> str:
    out = []
    for t in value if isinstance(value, list) else [value] if value else []:
        if isinstance(t, dict):
            ident = t.get("id") or t.get("technique") or ""
            name = t.get("name") or ""
            out.append(f"{ident} {name}".strip())
        else:
            out.append(str(t))
    return ", ".join(x for x in out if x)


def _alerts_section(alerts: list[Record], labels: dict[str, str]) -> str:
    if not alerts:
        return ('<section class="card" id="alerts"><h2>Alerts</h2>'
                '<p class="empty">No detector raised an alert on this input.</p></section>')
    rank = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    ordered = sorted(alerts, key=lambda a: (
        rank.get(str(a.get("keytrail.alert.severity")), len(rank)),
        -int(a.get("keytrail.alert.risk_score") or 0),
        str(a.get("keytrail.alert.first_seen") or ""), str(a.get("keytrail.alert.id") or "")))
    counts: dict[str, int] = defaultdict(int)
    for a in alerts:
        counts[str(a.get("keytrail.alert.severity") or "low")] += 1
    chips = " ".join(f"{_badge(SEVERITY_BADGE.get(s, 'b-gray'), f'{s} {counts[s]:,}')}"
                     for s in [*SEVERITY_ORDER, *sorted(set(counts) - set(SEVERITY_ORDER))]
                     if counts.get(s))
    items = []
    for a in ordered[:MAX_ALERTS]:
        sev = str(a.get("keytrail.alert.severity") or "low")
        key = a.get("keytrail.key.uid")
        evidence = [e for e in a.get("keytrail.alert.evidence") or [] if isinstance(e, dict)]
        ev_rows = [
            f'<tr><td>{_ts(e.get("@timestamp"))}</td><td class="mono">{_e(e.get("event.id"))}</td>'
            f'<td>{_prov(e.get("log.file.path"), e.get("log.offset"))}</td></tr>'
            for e in evidence[:MAX_ALERT_EVIDENCE]]
        ev_html = (f"<details><summary>Evidence ({len(evidence):,} record"
                   f"{'s' if len(evidence) != 1 else ''})</summary>"
                   + _table([("Time", ""), ("event.id", ""), ("log.file.path@log.offset", "")],
                            ev_rows, scroll=False, sortable=False) + "</details>") if ev_rows \
            else '<p class="note">No evidence records attached.</p>'
        tech = _technique_text(a.get("threat.technique"))
        key_html = (f'{_e(labels.get(str(key), ""))} <span class="uid">{_e(key)}</span>'
                    if key else "—")
        items.append(
            f'<article class="alert sev-{_e(sev)}" data-row data-severity="{_e(sev)}">'
            f'<header>{_badge(SEVERITY_BADGE.get(sev, "b-gray"), sev)}'
            f'<span class="rule">{_e(a.get("rule.name"))}</span>'
            f'<code class="rid">{_e(a.get("rule.id"))}</code>'
            f'<span class="risk">risk {_e(a.get("keytrail.alert.risk_score"))}</span>'
            + (f'<span class="tech">ATT&amp;CK {_e(tech)}</span>' if tech else "")
            + f'</header><p class="explain">{_e(a.get("keytrail.alert.explanation"))}</p>'
            f'<dl class="kv"><dt>Key</dt><dd class="wide">{key_html}</dd>'
            f'<dt>Principal</dt><dd class="wide mono">{_e(a.get("user.id") or "—")}</dd>'
            f'<dt>First / last seen</dt><dd>{_ts(a.get("keytrail.alert.first_seen"))} → '
            f'{_ts(a.get("keytrail.alert.last_seen"))}</dd>'
            f'<dt>Events</dt><dd>{_n(a.get("keytrail.alert.event_count") or 0)}</dd>'
            f'<dt>Status</dt><dd>{_e(a.get("keytrail.alert.status") or "open")}</dd>'
            f'<dt>Why an alert</dt><dd class="wide">{_e(a.get("keytrail.alert.why") or "—")}'
            f'</dd><dt>Suppress with</dt><dd class="wide">'
            f'{_e(a.get("keytrail.alert.suppress_with") or "—")}</dd>'
            f'<dt>Signals</dt><dd class="wide">{_e(_signal_refs(a))}</dd>'
            f'<dt>Alert id</dt><dd class="mono">{_e(a.get("keytrail.alert.id"))}</dd></dl>'
            f"{ev_html}</article>")
    return f"""<section class="card" id="alerts"><h2>Alerts</h2>
<p class="lead">Detector findings, most severe first. Each names the key and principal, the
time span, and the exact source records behind it.</p>
<div class="sevchips">{chips}</div>
{_filter_box("alert-list", "Filter alerts: rule, key, principal, severity…", len(items))}
<div id="alert-list">{"".join(items)}</div>
{_cap_note(len(items), len(alerts), "alerts", "alerts.ndjson has all of them.")}
</section>"""


def _signal_refs(a: Record) -> str:
    refs = [r for r in a.get("keytrail.alert.signals") or [] if isinstance(r, dict)]
    return "; ".join(f"{r.get('rule.id')} ({r.get('disposition')}, risk {r.get('risk_score')})"
                     for r in refs[:10]) or "—"


def _signals_section(signals: list[Record] | None) -> str:
    if not signals:
        return ('<section class="card" id="signals"><h2>Signals</h2><p class="empty">No '
                "detections on this input.</p></section>")
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for sg in signals:
        counts[(str(sg.get("rule.id")), str(sg.get("keytrail.signal.disposition")))] += 1
    rows = [f'<tr data-row><td class="mono">{_e(rule)}</td><td>{_e(disp)}</td>'
            f'<td class="num" data-sort="{n}">{n:,}</td></tr>'
            for (rule, disp), n in sorted(counts.items())]
    alerted = sum(n for (_, d), n in counts.items() if d == "alert")
    return f"""<section class="card" id="signals"><h2>Signals</h2>
<p class="lead">Every detection is a signal ({len(signals):,}); {alerted:,} were promoted to
alerts. The others stay searchable with their evidence and the reason they are not alerts
(routine schedule, ephemeral session key, ticket, user exception, low risk):
<code>signals.parquet</code> / <code>signals.ndjson</code>.</p>
{_filter_box("signals-table", "Filter: rule, disposition…", len(rows))}
{_table([("Rule", ""), ("Disposition", ""), ("Signals", "num")], rows, table_id="signals-table")}
</section>"""


def _resources_section(resource_edges: list[Record], labels: dict[str, str]) -> str:
    if not resource_edges:
        return ('<section class="card" id="resources"><h2>Key → resource edges</h2>'
                '<p class="empty">No log named a resource protected by a key (encryption '
                "context).</p></section>")
    ordered = sorted(resource_edges, key=lambda r: (-int(r.get("count") or 0),
                                                    str(r.get("key_uid")), str(r.get("resource"))))
    per_key: dict[str, int] = defaultdict(int)
    for r in resource_edges:
        per_key[str(r.get("key_uid"))] += 1
    resources = len({str(r.get("resource")) for r in resource_edges})
    rows = [
        f'<tr data-row><td data-sort="{_e(labels.get(str(r.get("key_uid")), "").lower())}">'
        f'<div class="kname">{_e(labels.get(str(r.get("key_uid")), ""))}</div>'
        f'<div class="uid">{_e(r.get("key_uid"))}</div></td>'
        f'<td class="prov">{_e(r.get("resource"))}</td>'
        f'<td class="num" data-sort="{int(r.get("count") or 0)}">{int(r.get("count") or 0):,}</td>'
        f'<td data-sort="{_e(r.get("first_seen") or "")}">{_ts(r.get("first_seen"))}</td>'
        f'<td data-sort="{_e(r.get("last_seen") or "")}">{_ts(r.get("last_seen"))}</td></tr>'
        for r in ordered[:MAX_RESOURCE_ROWS]]
    top_keys = sorted(per_key.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    top = ", ".join(f"{_e(labels.get(k, k))} ({n:,})" for k, n in top_keys)
    return f"""<section class="card" id="resources"><h2>Key → resource edges</h2>
<p class="lead">What the keys protected, from encryption context: {len(resource_edges):,} edges,
{resources:,} distinct resources, {len(per_key):,} keys. Most resources: {top}.</p>
{_filter_box("resources-table", "Filter: key, resource…", len(rows))}
{_table([("Key", ""), ("Resource", ""), ("Uses", "num"), ("First seen", ""), ("Last seen", "")],
        rows, table_id="resources-table")}
{_cap_note(len(rows), len(resource_edges), "edges", "the graph exports carry all of them.")}
</section>"""


# --- the document ------------------------------------------------------------------------

def _sorted_records(records: list[Record], key: Callable[[Record], Any]) -> list[Record]:
    return sorted((r for r in records if isinstance(r, dict)), key=key)


def render_report(summary: dict[str, Any], inventory: list[dict[str, Any]],
                  edges: list[dict[str, Any]], resource_edges: list[dict[str, Any]],
                  alerts: list[dict[str, Any]],
                  signals: list[dict[str, Any]] | None = None) -> str:
    """One self-contained, deterministic HTML document for auditors."""
    summary = summary if isinstance(summary, dict) else {}
    inventory = _sorted_records(inventory, lambda r: str(r.get("uid")))
    inventory = [r for r in inventory if r.get("uid")]
    edges = _sorted_records(edges, lambda e: (str(e.get("principal")), str(e.get("key_uid")),
                                              str(e.get("operation")), str(e.get("window_start"))))
    resource_edges = _sorted_records(resource_edges, lambda r: (str(r.get("key_uid")),
                                                                str(r.get("resource"))))
    alerts = _sorted_records(alerts, lambda a: str(a.get("keytrail.alert.id")))
    labels = {str(r["uid"]): key_label(r) for r in inventory}
    # Session keys are summarised in the inventory section, not given rows or timelines.
    long_lived = [r for r in inventory if r.get("key_class") != "ephemeral"]
    css = _asset("report.css")
    js = _asset("report.js")
    csp = (f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    as_of = _as_of(summary, inventory)
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("scope", "Scope"), ("inventory", "Inventory"), ("rotation", "Rotation"),
        ("timeline", "Timeline"), ("graph", "Usage graph"), ("alerts", "Alerts"),
        ("signals", "Signals"), ("resources", "Resources")))
    body = "\n".join([
        _scope_section(summary, inventory, alerts, edges),
        _inventory_section(inventory, labels),
        _rotation_section(long_lived, labels),
        _timeline_section(long_lived, labels),
        _graph_section(edges, inventory, labels),
        _alerts_section(alerts, labels),
        _signals_section(signals),
        _resources_section(resource_edges, labels),
    ])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="keytrail">
<title>keytrail key inventory audit report — as of {_e(as_of)}</title>
<style>{css}</style>
</head>
<body>
<header class="top"><div class="wrap"><div><h1>Key inventory audit report</h1>
<p class="tag">Cryptographic key inventory, lifecycle and usage evidence from key-management
audit logs · CSA CCM CEK-21 · NIST SP 800-57 Pt1</p></div>
<div class="asof">Evidence as of<strong>{_e(as_of)}</strong></div></div></header>
<nav class="toc">{nav}</nav>
<main>
{body}
</main>
<footer>Generated by keytrail from the run's derived records. Every state transition and alert
links to its source record as log.file.path@log.offset; values taken from logs are shown
verbatim and escaped. This file loads nothing from the network.</footer>
<script>{js}</script>
</body>
</html>
"""
