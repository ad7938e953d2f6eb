"""Detector contract: findings, alerts, the three detector kinds and their registry.

Detectors are plain Python objects that know nothing of Beam. The pipeline feeds them:
- `EventDetector.match(event)`: per event, stateless;
- `WindowDetector.select(event)` -> entity, then `evaluate(entity, buckets)` over the
  entity's time-bucketed signals (bounded memory: counts per bucket, not every event);
- `InventoryDetector.evaluate(inventory, edges, as_of)`: over the derived records
  (rotation, dormant keys, new edges, anomaly models).
Findings become `Alert`s, deduplicated per (rule, entity, suppression window).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from parsers.base import KeytrailError, stable_id
from parsers.schema import KeyEvent

SEVERITIES: Final[tuple[str, ...]] = ("low", "medium", "high", "critical")
MAX_ALERT_EVIDENCE: Final[int] = 20
MAX_BUCKET_EVIDENCE: Final[int] = 3  # per bucket; an alert gathers its evidence across buckets
MAX_BUCKET_VALUES: Final[int] = 50


@dataclass(frozen=True, slots=True)
class Evidence:
    """Pointer to the exact source record behind an alert."""

    event_id: str
    timestamp: str
    log_file_path: str
    log_offset: int

    @staticmethod
    def of(ev: KeyEvent) -> Evidence:
        return Evidence(ev.event_id, ev.timestamp, ev.log_file_path, ev.log_offset)

    def to_dict(self) -> dict[str, Any]:
        return {"event.id": self.event_id, "@timestamp": self.timestamp,
                "log.file.path": self.log_file_path, "log.offset": self.log_offset}


@dataclass
class Finding:
    """What a detector reports; the framework turns findings into alerts."""

    entity: str  # what the alert is about, e.g. the key uid or 'principal|key'
    first_seen: str
    last_seen: str
    explanation: str
    evidence: list[Evidence] = field(default_factory=list)
    event_count: int = 1
    key_uid: str | None = None
    principal: str | None = None
    severity: str | None = None  # overrides the detector default when set
    risk_score: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def add_bounded(values: set[str], v: str, k: int) -> None:
    """Add `v` keeping only the `k` smallest values: the kept set is the same whatever the
    arrival or merge order (merges keep the k smallest of the union)."""
    if len(values) < k:
        values.add(v)
    elif v not in values:
        top = max(values)
        if v < top:
            values.remove(top)
            values.add(v)


def _evidence_key(e: Evidence) -> tuple[str, str]:
    return (e.timestamp, e.event_id)


def _provenance(e: Evidence) -> tuple[str, int]:
    return (e.log_file_path, e.log_offset)


def earliest_evidence(items: Iterable[Evidence], k: int) -> list[Evidence]:
    """The k earliest distinct events by (time, id). An event delivered more than once
    points at its first copy by (path, offset), the copy the event store keeps."""
    best: dict[str, Evidence] = {}
    for e in items:
        cur = best.get(e.event_id)
        if cur is None or _provenance(e) < _provenance(cur):
            best[e.event_id] = e
    return sorted(best.values(), key=_evidence_key)[:k]


@dataclass
class Bucket:
    """Mergeable per-(detector, entity, time bucket) signal aggregate."""

    start: str
    count: int = 0
    failures: int = 0
    first_seen: str = "9999"
    last_seen: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, ev: KeyEvent, values: dict[str, str | None] | None = None) -> None:
        self.count += 1
        if ev.outcome == "failure":
            self.failures += 1
        self.first_seen = min(self.first_seen, ev.timestamp)
        self.last_seen = max(self.last_seen, ev.timestamp)
        # Keep the earliest few distinct events, sorted, without re-sorting on every event.
        evidence = self.evidence
        if len(evidence) < MAX_BUCKET_EVIDENCE or (ev.timestamp, ev.event_id) <= (
                evidence[-1].timestamp, evidence[-1].event_id):
            new = Evidence.of(ev)
            for i, e in enumerate(evidence):
                if e.event_id == new.event_id:  # the same event delivered twice
                    if _provenance(new) < _provenance(e):
                        evidence[i] = new
                    break
            else:
                if len(evidence) >= MAX_BUCKET_EVIDENCE:
                    evidence.pop()
                evidence.append(new)
                evidence.sort(key=_evidence_key)
        for name, v in (values or {}).items():
            if v is not None:
                add_bounded(self.values.setdefault(name, set()), v, MAX_BUCKET_VALUES)

    def _keep_earliest(self, extra: list[Evidence]) -> None:
        self.evidence = earliest_evidence([*self.evidence, *extra], MAX_BUCKET_EVIDENCE)

    def merge(self, o: Bucket) -> Bucket:
        self.count += o.count
        self.failures += o.failures
        self.first_seen = min(self.first_seen, o.first_seen)
        self.last_seen = max(self.last_seen, o.last_seen)
        self._keep_earliest(o.evidence)
        for name, vs in o.values.items():
            s = self.values.setdefault(name, set())
            s |= vs
            if len(s) > MAX_BUCKET_VALUES:
                self.values[name] = set(sorted(s)[:MAX_BUCKET_VALUES])
        return self

    def retract(self, dup: Bucket) -> bool:
        """Un-count duplicate events (pipelines.dedupe); True when nothing is left."""
        self.count -= dup.count
        self.failures = max(0, self.failures - dup.failures)
        return self.count <= 0


class Detector(ABC):
    """Common metadata; the YAML file next to the detector carries the rest."""

    id: ClassVar[str]
    kind: ClassVar[str]
    params: dict[str, Any]

    def __init__(self, **params: Any) -> None:
        self.params = {**self.default_params(), **params}

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {}


class EventDetector(Detector):
    kind: ClassVar[str] = "event"
    # Prefilter used by the pipeline's dispatch table: only events whose
    # keytrail.operation is in this set reach `match` (None: every operation).
    operations: ClassVar[frozenset[str] | None] = None

    @abstractmethod
    def match(self, ev: KeyEvent) -> Finding | None:
        """A finding when this single event is alert-worthy."""


class WindowDetector(Detector):
    kind: ClassVar[str] = "window"
    bucket_seconds: ClassVar[int] = 60
    operations: ClassVar[frozenset[str] | None] = None  # prefilter, as for EventDetector

    @abstractmethod
    def select(self, ev: KeyEvent) -> str | None:
        """The entity this event counts for, or None when irrelevant (cheap prefilter)."""

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        """Distinct values to remember per bucket (bounded), e.g. {'key': ev.key_uid}."""
        return {}

    @abstractmethod
    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        """Findings over the entity's buckets, sorted by start."""

    def gate(self) -> tuple[int, int] | None:
        """(window_seconds, threshold) when findings only come from spans where some
        window_seconds-wide window holds >= threshold selected events (burst detectors).

        The batch pipeline then keeps only per-bucket counts for this detector while
        streaming, and rebuilds the full buckets of the spans that pass the gate from the
        event store at the end: memory stays bounded by entities x days, not by events.
        None (the default): full buckets are kept for every selected event.
        """
        return None


class InventoryDetector(Detector):
    kind: ClassVar[str] = "inventory"

    @abstractmethod
    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        """Findings over the derived inventory and usage-graph edges."""


@dataclass
class DetectorMeta:
    """Metadata from the detector's YAML file."""

    id: str
    title: str
    description: str
    severity: str
    risk_score: int
    version: int = 1
    techniques: list[dict[str, str]] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    suppression_window: str = "1d"
    enabled: bool = True
    false_positives: str = ""
    runbook: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    # From the user's tuning (detectors.catalog.load_detectors); empty by default.
    allow: dict[str, list[str]] = field(default_factory=dict)
    suppress: list[dict[str, str]] = field(default_factory=list)
    severity_overridden: bool = False  # a user severity wins over a finding's own
    risk_score_overridden: bool = False
    # 'always': every signal of this rule is an alert; 'baseline' (default): the alert tier
    # may keep it a signal when it is routine (detectors.alerting).
    alert_tier: str = "baseline"
    # What a routine is counted per: the identity, and for rules about who uses a key also
    # the key (a key whose user population churns routinely: CI runners, pod identities).
    baseline_by: list[str] = field(default_factory=lambda: ["principal"])
    exceptions: list[dict[str, Any]] = field(default_factory=list)


class DetectorError(KeytrailError):
    """A detector definition or tuning value is invalid."""


def hot_flags(starts_ms: list[int], vals: list[int], width_ms: int, threshold: int
              ) -> list[bool]:
    """For buckets sorted by start: is the bucket (non-empty) inside some window of
    `width_ms` starting at a bucket start whose summed values reach `threshold`?"""
    n = len(starts_ms)
    hot = [False] * n
    j = 0
    total = 0
    for i in range(n):
        limit = starts_ms[i] + width_ms
        while j < n and starts_ms[j] < limit:
            total += vals[j]
            j += 1
        if total >= threshold:
            for k in range(i, j):
                if vals[k]:
                    hot[k] = True
        total -= vals[i]
    return hot


def bucket_start(ts: str, seconds: int) -> str:
    """Start of the `seconds`-wide bucket holding the ISO timestamp `ts`."""
    if 86400 % seconds == 0:
        # Buckets that divide a day align to midnight: plain string arithmetic (this runs
        # for every event a window detector selects).
        sod = int(ts[11:13]) * 3600 + int(ts[14:16]) * 60 + int(ts[17:19])
        sod -= sod % seconds
        return f"{ts[:11]}{sod // 3600:02d}:{sod % 3600 // 60:02d}:{sod % 60:02d}.000Z"
    from parsers.timeutil import from_epoch_ms, to_epoch_ms

    ms = to_epoch_ms(ts)
    width = seconds * 1000
    return from_epoch_ms(ms - ms % width)


def suppression_start(ts: str, window: str) -> str:
    """Start of the dedup/suppression window: '1h', '1d' (default) or '7d'/'30d'."""
    if window.endswith("h"):
        return bucket_start(ts, int(window[:-1]) * 3600)
    return bucket_start(ts, int(window[:-1] or 1) * 86400)


def make_alert(meta: DetectorMeta, f: Finding, severity: str | None = None) -> dict[str, Any]:
    """Alert document (DESIGN.md section 3) with a deterministic id."""
    window = suppression_start(f.first_seen, meta.suppression_window)
    evidence = sorted(f.evidence, key=_evidence_key)[:MAX_ALERT_EVIDENCE]
    sev = severity or (meta.severity if meta.severity_overridden else None) or (
        f.severity or meta.severity)
    risk = meta.risk_score if meta.risk_score_overridden or f.risk_score is None else f.risk_score
    return {
        "keytrail.alert.id": stable_id("alert", meta.id, f.entity, window),
        "@timestamp": f.last_seen,
        "rule.id": meta.id,
        "rule.name": meta.title,
        "rule.version": meta.version,
        "rule.description": meta.description,
        "event.severity_label": sev,
        "keytrail.alert.severity": sev,
        "keytrail.alert.risk_score": risk,
        "threat.technique": meta.techniques,
        "keytrail.alert.entity": f.entity,
        "keytrail.key.uid": f.key_uid,
        "user.id": f.principal,
        "keytrail.alert.first_seen": f.first_seen,
        "keytrail.alert.last_seen": f.last_seen,
        "keytrail.alert.window_start": window,
        "keytrail.alert.event_count": f.event_count,
        "keytrail.alert.evidence": [e.to_dict() for e in evidence],
        "keytrail.alert.explanation": f.explanation,
        "keytrail.alert.status": "open",
        "keytrail.alert.runbook": meta.runbook,
        "keytrail.alert.details": f.details,
    }


def merge_alerts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Combine two partial alerts with the same id (order-independent)."""
    first, second = (a, b) if (a["keytrail.alert.first_seen"], a["keytrail.alert.explanation"]) <= (
        b["keytrail.alert.first_seen"], b["keytrail.alert.explanation"]) else (b, a)
    out = dict(first)
    out["keytrail.alert.last_seen"] = max(a["keytrail.alert.last_seen"],
                                          b["keytrail.alert.last_seen"])
    out["@timestamp"] = out["keytrail.alert.last_seen"]
    out["keytrail.alert.event_count"] = (a["keytrail.alert.event_count"]
                                         + b["keytrail.alert.event_count"])
    ev: dict[str, dict[str, Any]] = {}
    for e in [*a["keytrail.alert.evidence"], *b["keytrail.alert.evidence"]]:
        # The same event delivered twice: point at its first copy, whatever the merge order.
        cur = ev.get(e["event.id"])
        if cur is None or (e["log.file.path"], e["log.offset"]) < (
                cur["log.file.path"], cur["log.offset"]):
            ev[e["event.id"]] = e
    out["keytrail.alert.evidence"] = sorted(
        ev.values(), key=lambda e: (e["@timestamp"], e["event.id"]))[:MAX_ALERT_EVIDENCE]
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    sev_first = rank.get(first["keytrail.alert.severity"], 0)
    if rank.get(second["keytrail.alert.severity"], 0) > sev_first:
        out["keytrail.alert.severity"] = second["keytrail.alert.severity"]
        out["event.severity_label"] = second["keytrail.alert.severity"]
    out["keytrail.alert.risk_score"] = max(a["keytrail.alert.risk_score"],
                                           b["keytrail.alert.risk_score"])
    return out
