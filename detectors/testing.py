"""In-memory detection runner with the pipeline's semantics, and the YAML case runner.

`run_detection` is the reference for what the Beam pipeline must produce:
- every event goes to every `EventDetector.match`;
- `WindowDetector.select` picks an entity; events aggregate into `Bucket`s per
  (detector id, entity, bucket start of `bucket_seconds`), then `evaluate(entity, buckets
  sorted by start)`;
- per key `KeyAccumulator` (primary and destination uid) -> `build_inventory_record`, per
  (principal, key, operation, window) `EdgeAccumulator` -> `edge_record`, then every
  `InventoryDetector.evaluate(inventory, edges, as_of)` once;
- `accept` filters findings, `make_alert` builds alerts and `merge_alerts` combines alerts
  with the same id. `as_of` defaults to the latest event timestamp (never the wall clock,
  so a re-run gives identical alerts).
"""

from __future__ import annotations

import string
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from detectors.base import (
    Bucket,
    Detector,
    DetectorMeta,
    EventDetector,
    InventoryDetector,
    WindowDetector,
    bucket_start,
    make_alert,
    merge_alerts,
)
from detectors.catalog import REGISTRY, accept, load_meta
from detectors.graph import EdgeAccumulator, EdgeKey, edge_key, edge_record
from detectors.inventory import KeyAccumulator, build_inventory_record
from parsers.base import ParseOptions, Quarantined
from parsers.detect import parse_bytes
from parsers.schema import KeyEvent

EDGE_WINDOW = "1d"


@dataclass
class DerivedState:
    """Inventory and edge partials built from events (mergeable, like the pipeline's)."""

    keys: dict[str, KeyAccumulator] = field(default_factory=dict)
    edges: dict[EdgeKey, EdgeAccumulator] = field(default_factory=dict)
    max_ts: str = ""

    def add(self, ev: KeyEvent, edge_window: str = EDGE_WINDOW) -> None:
        self.max_ts = max(self.max_ts, ev.timestamp)
        for uid in {ev.key_uid, ev.key_destination_uid} - {None}:
            assert uid is not None
            acc = self.keys.get(uid)
            if acc is None:
                acc = self.keys[uid] = KeyAccumulator(uid)
            acc.add(ev, uid)
        k = edge_key(ev, edge_window)
        if k is not None:
            e = self.edges.get(k)
            if e is None:
                e = self.edges[k] = EdgeAccumulator()
            e.add(ev)

    def records(self, as_of: str, edge_window: str = EDGE_WINDOW
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        inv = [build_inventory_record(self.keys[u], as_of) for u in sorted(self.keys)]
        edges = [edge_record(k, self.edges[k], edge_window) for k in sorted(self.edges)]
        return inv, edges


def run_detection(events: Iterable[KeyEvent],
                  detectors: list[tuple[Detector, DetectorMeta]],
                  as_of: str | None = None,
                  edge_window: str = EDGE_WINDOW,
                  tiers: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All signals for `events` (each detector's own view, allow-lists applied), sorted by
    (first_seen, alert id); with `tiers` (the `detectors.alerting` settings, {} for the
    defaults) the alert tier's alerts instead, as the pipeline writes them."""
    alerts: dict[str, dict[str, Any]] = {}

    def emit(det: Detector, meta: DetectorMeta, findings: Iterable[Any]) -> None:
        for f in findings:
            if f is None or not accept(det, meta, f):
                continue
            a = make_alert(meta, f)
            aid = a["keytrail.alert.id"]
            alerts[aid] = merge_alerts(alerts[aid], a) if aid in alerts else a

    event_dets = [(d, m) for d, m in detectors if isinstance(d, EventDetector)]
    window_dets = [(d, m) for d, m in detectors if isinstance(d, WindowDetector)]
    inv_dets = [(d, m) for d, m in detectors if isinstance(d, InventoryDetector)]
    buckets: dict[tuple[str, str], dict[str, Bucket]] = defaultdict(dict)
    state = DerivedState()
    for ev in events:
        state.add(ev, edge_window)
        for d, m in event_dets:
            f = d.match(ev)
            if f is not None:
                emit(d, m, [f])
        for wd, _ in window_dets:
            entity = wd.select(ev)
            if entity is None:
                continue
            start = bucket_start(ev.timestamp, wd.bucket_seconds)
            per = buckets[(wd.id, entity)]
            b = per.get(start)
            if b is None:
                b = per[start] = Bucket(start)
            b.add(ev, wd.values(ev))
    by_id = {d.id: (d, m) for d, m in window_dets}
    for (det_id, entity), per in sorted(buckets.items()):
        wd, m = by_id[det_id]
        assert isinstance(wd, WindowDetector)
        emit(wd, m, wd.evaluate(entity, [per[s] for s in sorted(per)]))
    inv: list[dict[str, Any]] = []
    if state.max_ts:
        when = as_of or state.max_ts
        inv, edges = state.records(when, edge_window)
        for idet, m in inv_dets:
            assert isinstance(idet, InventoryDetector)
            emit(idet, m, idet.evaluate(inv, edges, when))
    out = sorted(alerts.values(),
                 key=lambda a: (a["keytrail.alert.first_seen"], a["keytrail.alert.id"]))
    if tiers is None:
        return out
    from detectors.alerting import AlertPolicy, two_tiers

    _, tiered = two_tiers(out, inv, {m.id: m for _, m in detectors}, AlertPolicy(**tiers))
    return sorted(tiered, key=lambda a: (a["keytrail.alert.first_seen"], a["keytrail.alert.id"]))


# --- YAML cases ----------------------------------------------------------------------------

def _iso(dt: datetime, digits: int = 3) -> str:
    frac = f"{dt.microsecond:06d}" + "0"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + frac[:digits] + "Z"


def _render(text: str, repeat: dict[str, Any] | None) -> str:
    """The case text, repeated with $i/$ts/$ts7/$hsm_time/$usecs/$uuid placeholders."""
    if not repeat:
        return text
    start = datetime.strptime(str(repeat["start"]).rstrip("Z")[:19],
                              "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    every = float(repeat.get("every_seconds", 1))
    tpl = string.Template(text)
    parts = []
    for i in range(int(repeat["times"])):
        dt = start + timedelta(seconds=every * i)
        parts.append(tpl.safe_substitute(
            i=str(i), ts=dt.strftime("%Y-%m-%dT%H:%M:%SZ"), ts7=_iso(dt, 7),
            hsm_time=dt.strftime("%m/%d/%y %H:%M:%S.%f"),
            usecs=str(int(dt.timestamp() * 1_000_000)),
            uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"case-{start.isoformat()}-{i}")),
            hex=f"{i + 1:x}"))
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def case_files(case: dict[str, Any]) -> list[bytes]:
    """One raw file per `files` entry (or the case itself): setup + repeated records + after."""
    out = []
    for spec in case.get("files") or [case]:
        text = str(spec.get("setup") or "") + _render(str(spec.get("records") or ""),
                                                      spec.get("repeat")) + str(
            spec.get("after") or "")
        out.append(text.encode("utf-8"))
    return out


@dataclass
class CaseResult:
    detector_id: str
    name: str
    ok: bool
    expected: str
    alerts: list[dict[str, Any]]
    events: int
    quarantined: list[Quarantined]
    message: str


def parse_case(case: dict[str, Any], prefix: str) -> tuple[list[KeyEvent], list[Quarantined]]:
    events: list[KeyEvent] = []
    bad: list[Quarantined] = []
    for n, data in enumerate(case_files(case)):
        _, outcomes = parse_bytes(data, f"{prefix}/{n}", ParseOptions())
        for o in outcomes:
            if isinstance(o, KeyEvent):
                events.append(o)
            elif isinstance(o, Quarantined):
                bad.append(o)
    return events, bad


def run_case(meta: DetectorMeta, case: dict[str, Any], index: int) -> CaseResult:
    """Run one labelled case through the real parsers and this detector alone."""
    name = str(case.get("name") or f"case {index}")
    params = {**meta.params, **(case.get("params") or {})}
    det = REGISTRY.classes[meta.id](**params)
    m = replace(meta, params=params)
    events, bad = parse_case(case, f"cases/{meta.id}/{index}")
    alerts = run_detection(events, [(det, m)], as_of=case.get("as_of"))
    expected = str(case.get("expect"))
    want = case.get("count")
    if bad:
        ok, msg = False, f"{len(bad)} record(s) quarantined: " + "; ".join(
            f"{q.reason} ({q.detail})" for q in bad[:3])
    elif not events:
        ok, msg = False, "the records produced no events (skipped by the parser?)"
    elif expected == "alert":
        ok = bool(alerts) and (want is None or len(alerts) == int(want))
        msg = f"expected {'an alert' if want is None else f'{want} alert(s)'}, got {len(alerts)}"
    elif expected == "no_alert":
        ok, msg = not alerts, f"expected no alert, got {len(alerts)}"
    else:
        ok, msg = False, f"expect must be alert or no_alert, got {expected!r}"
    if ok:
        msg = f"ok ({len(events)} events, {len(alerts)} alerts)"
    return CaseResult(meta.id, name, ok, expected, alerts, len(events), bad, msg)


def run_cases(detector_id: str) -> list[CaseResult]:
    meta = load_meta(detector_id)
    return [run_case(meta, c, i) for i, c in enumerate(meta.cases)]
