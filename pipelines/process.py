"""Per-file processing without Beam: parse, write the event shard, build mergeable partials.

`FileProcessor.process` is what the pipeline's ParseAndAggregate stage runs for every input
object (and what `keytrail watch` runs for new objects). It never raises for bad content:
unreadable input becomes a quarantined record. `records_in` is what the framing counted
in the container (lines, elements, blocks, broken spans), so a record the parsers lost
shows up as `records_in != events + duplicates + skipped + quarantined` (accounting_ok false).
"""

from __future__ import annotations

import dataclasses
import gc
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern
from typing import IO, Any, Final, TypeAlias, cast

import numpy as np
import orjson

from detectors.base import (
    Bucket,
    DetectorMeta,
    EventDetector,
    WindowDetector,
    bucket_start,
    make_alert,
    merge_alerts,
)
from detectors.graph import (
    UNKNOWN_PRINCIPAL,
    EdgeAccumulator,
    EdgeKey,
    ResourceAccumulator,
    window_start,
)
from detectors.inventory import KeyAccumulator
from parsers.base import (
    REGISTRY,
    ParseOptions,
    ParseOutcome,
    Quarantined,
    Skipped,
    quarantine,
    stable_id,
)
from parsers.detect import open_detected, parse_stream, redact_quarantine_contexts
from parsers.framing import Source, Tally
from parsers.schema import KeyEvent
from pipelines.outdir import atomic_write
from pipelines.sources import InputFile, open_input
from pipelines.store import EventShardWriter

QUARANTINE_DIR: Final[str] = "_quarantine"
EVENTS_DIR: Final[str] = "events"
# The only names keytrail writes (and so may delete) in those two directories.
EVENT_SHARD: Final[re.Pattern[str]] = re.compile(r"part-[0-9a-f]{32}\.parquet")
QUARANTINE_SHARD: Final[re.Pattern[str]] = re.compile(r"[0-9a-f]{32}\.ndjson")
BucketKey = tuple[str, str, str]  # detector id, entity, bucket start
GateKey = tuple[str, str, str]  # detector id, entity, day ('YYYY-MM-DD')
# Per-bucket counts of one (detector, entity, day): {slot: count} while few slots are
# used (most principals are active a few minutes a day), a dense uint32 array after.
Counts: TypeAlias = "dict[int, int] | array[int]"
SPARSE_SLOTS: Final[int] = 64


@dataclass
class FileResult:
    """Everything one input file contributes to the run (all parts mergeable)."""

    summary: dict[str, Any]
    keys: dict[str, KeyAccumulator] = field(default_factory=dict)
    edges: dict[EdgeKey, EdgeAccumulator] = field(default_factory=dict)
    resources: dict[tuple[str, str], ResourceAccumulator] = field(default_factory=dict)
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Gated window detectors: per-bucket counts, one array per (detector, entity, day).
    gated: dict[GateKey, Counts] = field(default_factory=dict)
    max_ts: str | None = None
    # uint64 id prefixes of the unit's event shard rows, in row order (pipelines.dedupe).
    ids: Any = None


def tune_gc() -> None:
    """Fewer cyclic-GC passes while streaming events (~20% of per-event time otherwise).

    The hot loop allocates millions of short-lived, acyclic objects (events, dicts); with
    the default thresholds the collector traverses the live partials again and again.
    Called by the processes that run FileProcessor (Beam workers, the watcher).
    """
    gc.set_threshold(100_000, 50, 100)


def merge_gated(into: dict[GateKey, Counts], other: dict[GateKey, Counts]) -> None:
    """Add `other`'s per-bucket counts into `into` (values may be adopted, not copied)."""
    for gk, theirs in other.items():
        mine = into.get(gk)
        if mine is None:
            into[gk] = theirs
        elif isinstance(mine, array):
            if isinstance(theirs, array):
                view = np.frombuffer(mine, dtype=np.uint32)  # writes through to `mine`
                view += np.frombuffer(theirs, dtype=np.uint32)
            else:
                for i, n in theirs.items():
                    mine[i] += n
        elif isinstance(theirs, array):
            dense = array("I", theirs)
            for i, n in mine.items():
                dense[i] += n
            into[gk] = dense
        else:
            for i, n in theirs.items():
                mine[i] = mine.get(i, 0) + n


def subtract_gated(into: dict[GateKey, Counts], other: dict[GateKey, Counts]) -> None:
    """Subtract `other`'s per-bucket counts (duplicates, pipelines.dedupe) from `into`."""
    for gk, theirs in other.items():
        mine = into.get(gk)
        if mine is None:
            continue
        for i, n in count_items(theirs):
            left = max(0, mine[i] - n) if isinstance(mine, array) else mine.get(i, 0) - n
            if left > 0 or isinstance(mine, array):
                mine[i] = left
            else:
                mine.pop(i, None)
        if not count_items(mine):
            del into[gk]


def dense_counts(sparse: dict[int, int], slots: int) -> array[int]:
    dense = array("I", bytes(4 * slots))
    for i, n in sparse.items():
        dense[i] = n
    return dense


def count_items(counts: Counts) -> list[tuple[int, int]]:
    """(slot, count) pairs with a count, by slot."""
    if isinstance(counts, array):
        return [(int(i), int(counts[i]))
                for i in np.flatnonzero(np.frombuffer(counts, dtype=np.uint32)).tolist()]
    return sorted((i, n) for i, n in counts.items() if n)


def shard_name(uri: str) -> str:
    return stable_id("shard", uri)


@dataclass
class Detection:
    """Detectors prepared for the hot loop: dispatch tables by (dataset, operation)."""

    event: list[tuple[EventDetector, DetectorMeta]]
    window: list[tuple[WindowDetector, DetectorMeta]]
    accept: Callable[[Any, DetectorMeta, Any], bool]
    _event_table: dict[tuple[str, str], list[tuple[EventDetector, DetectorMeta]]] = field(
        default_factory=dict)
    _window_table: dict[tuple[str, str], list[tuple[WindowDetector, DetectorMeta]]] = field(
        default_factory=dict)
    # detector id -> (bucket_seconds, window_seconds, threshold) for gated detectors
    gates: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for wd, meta in self.window:
            g = wd.gate()
            if g is not None and 86400 % wd.bucket_seconds == 0:
                self.gates[meta.id] = (wd.bucket_seconds, g[0], g[1])

    def for_event(self, ds: str, op: str) -> list[tuple[EventDetector, DetectorMeta]]:
        k = (ds, op)
        hit = self._event_table.get(k)
        if hit is None:
            hit = [(d, m) for d, m in self.event if _wants(d.operations, m, ds, op)]
            self._event_table[k] = hit
        return hit

    def for_window(self, ds: str, op: str) -> list[tuple[WindowDetector, DetectorMeta]]:
        k = (ds, op)
        hit = self._window_table.get(k)
        if hit is None:
            hit = [(d, m) for d, m in self.window if _wants(d.operations, m, ds, op)]
            self._window_table[k] = hit
        return hit


def _wants(ops: frozenset[str] | None, meta: DetectorMeta, ds: str, op: str) -> bool:
    if meta.datasets and ds not in meta.datasets:
        return False
    if ops is None:  # "every operation" means every use: a call seen at a VPC endpoint
        return op != "network_activity"  # is the same call, already on its own record
    return op in ops


def _rebase(outcomes: Iterator[ParseOutcome], base: int,
            offset_extras: tuple[str, ...] = ()) -> Iterator[ParseOutcome]:
    """Offsets of a byte-range unit are relative to its start; make them absolute."""
    for o in outcomes:
        if isinstance(o, KeyEvent):
            o.log_offset += base
            for name in offset_extras:
                if o.extra and name in o.extra:
                    o.extra[name] += base
            yield o
        else:
            yield dataclasses.replace(o, offset=o.offset + base)


class FileProcessor:
    """Processes input files into `FileResult`s, writing event shards under `out_dir`."""

    def __init__(self, out_dir: str, options: ParseOptions, window: str,
                 detection: Detection | None, write_events: bool = True,
                 s3_client: Any = None, gate_windows: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.options = options
        self.window = window
        self.detection = detection
        self.write_events = write_events
        self.s3_client = s3_client
        self.parsers = REGISTRY.create_all(options)
        # Counts only for gated window detectors; their buckets are rebuilt from the event
        # store at the end (needs the events written).
        self.gates = detection.gates if detection is not None and gate_windows \
            and write_events else {}

    def _parse_range(self, stream: Any, f: InputFile, resume: dict[str, Any], final: bool,
                     tally: Tally) -> tuple[str | None, Iterator[ParseOutcome]]:
        """One byte range of a growing file with the parser its first range chose; the
        framing counts the range's records into `tally` like a whole file's."""
        src: Source
        if resume.get("parser") is None:
            found, src = open_detected(stream, self.parsers, tally)
            resume["parser"] = found.id if found is not None else ""
        else:
            src = Source(b"", stream, tally)
        parser = next((p for p in self.parsers if p.id == resume["parser"]), None)
        if parser is None:  # the file's first range was not recognised: quarantined once
            head = src.read(512)
            if f.start == 0 and head:
                tally.records += 1
                return None, iter([quarantine("unrecognized_format", f.uri, 0, head)])
            return None, iter([])
        outcomes = parser.parse_range(cast(IO[bytes], src), f.uri,
                                      resume.setdefault("carry", []), f.start, final)
        if parser.options.redact_encryption_context:
            outcomes = redact_quarantine_contexts(outcomes)
        return parser.dataset, _rebase(outcomes, f.start, parser.offset_extras)

    def process(self, f: InputFile, resume: dict[str, Any] | None = None,
                final: bool = False) -> FileResult:
        """One input object, or (with `resume`, live mode) one byte range of a growing
        file; `final` asks for the end-of-file outcomes batch would give there."""
        uri = f.uri
        name = shard_name(f.unit_id)
        base = f.start
        skipped: Counter[str] = Counter()
        quarantined: Counter[str] = Counter()
        res = FileResult(summary={})
        writer = EventShardWriter(self.out_dir / EVENTS_DIR / f"part-{name}.parquet") \
            if self.write_events else None
        qpath = self.out_dir / QUARANTINE_DIR / f"{name}.ndjson"
        qrows: list[bytes] = []
        events = 0
        dataset: str | None = None
        max_ts = ""
        # Records counted from the container by the framing, not from the outcomes.
        tally = Tally()
        try:
            stream = open_input(f, self.s3_client)
        except Exception as exc:
            q = quarantine("unreadable_input", uri, 0, b"", None, str(exc)[:300])
            qrows.append(orjson.dumps(q.to_dict(), option=orjson.OPT_SORT_KEYS))
            quarantined[q.reason] += 1
            tally.records += 1  # the whole file, one span
            stream = None
        if stream is not None:
            last_offset = 0

            def key_events(outcomes: Iterator[ParseOutcome]) -> Iterator[KeyEvent]:
                """The file's events (written to the shard); counts the other outcomes."""
                nonlocal events, max_ts, last_offset
                for o in outcomes:
                    if type(o) is KeyEvent:
                        events += 1
                        ts = o.timestamp
                        if ts > max_ts:  # noqa: PLR1730 (hot path: max() is a call)
                            max_ts = ts
                        if writer is not None:
                            writer.add(o)
                        last_offset = o.log_offset
                        yield o
                    elif type(o) is Skipped:
                        skipped[o.reason] += 1
                        last_offset = o.offset
                    else:
                        assert isinstance(o, Quarantined)
                        quarantined[o.reason] += 1
                        qrows.append(orjson.dumps(o.to_dict(), option=orjson.OPT_SORT_KEYS))
                        last_offset = o.offset

            with stream:
                try:
                    if resume is not None:
                        dataset, outcomes = self._parse_range(stream, f, resume, final, tally)
                    else:
                        dataset, outcomes = parse_stream(stream, uri, self.parsers, tally)
                        if base:
                            outcomes = _rebase(outcomes, base)
                    self.fold(key_events(outcomes), res)
                except Exception as exc:
                    q = quarantine("read_error", uri, last_offset, b"", dataset,
                                   f"{type(exc).__name__}: {str(exc)[:300]}; rest of file unread")
                    quarantined[q.reason] += 1
                    tally.records += 1  # the unread rest, one span
                    qrows.append(orjson.dumps(q.to_dict(), option=orjson.OPT_SORT_KEYS))
        if writer is not None:
            if events:
                writer.close()
                res.ids = writer.ids
            else:
                writer.abort()
        if qrows:
            atomic_write(qpath, b"\n".join(qrows) + b"\n")
        res.summary = {
            "path": uri,
            "dataset": dataset,
            "records_in": tally.records,
            "events": events,
            # Events of this file already counted from another copy (set by pipelines.dedupe
            # once every file's ids are known); records_in == events + duplicates + ...
            "duplicates": 0,
            "skipped": dict(sorted(skipped.items())),
            "quarantined": dict(sorted(quarantined.items())),
            "bytes": f.size,
        }
        if f.unit_id != uri:
            res.summary["unit"] = f.unit_id
        res.max_ts = max_ts or None
        return res

    def fold(self, events: Iterable[KeyEvent], res: FileResult) -> None:
        """Add events to the partials of `res`: the one definition of what an event
        contributes (pipelines.dedupe folds dropped duplicates with it to retract them)."""
        keys, edges, resources = res.keys, res.edges, res.resources
        window = self.window
        det = self.detection
        for o in events:
            uid = o.key_uid
            if uid is not None:
                ts = o.timestamp
                acc = keys.get(uid)
                if acc is None:
                    acc = keys[uid] = KeyAccumulator(uid)
                acc.add(o)
                ek = (o.user_id or UNKNOWN_PRINCIPAL, uid, o.operation, window_start(ts, window))
                ea = edges.get(ek)
                if ea is None:
                    # Interned parts: the partial pickles each string once.
                    ek = tuple(map(intern, ek))  # type: ignore[assignment]
                    ea = edges[ek] = EdgeAccumulator()
                ea.add(o)
                if o.resource:
                    rk = (uid, o.resource)
                    ra = resources.get(rk)
                    if ra is None:
                        ra = resources[rk] = ResourceAccumulator()
                    ra.add(ts)
                dest = o.key_destination_uid
                if dest is not None and dest != uid:
                    dacc = keys.get(dest)
                    if dacc is None:
                        dacc = keys[dest] = KeyAccumulator(dest)
                    dacc.add(o, uid=dest)
            if det is not None:
                self._detect(o, det, res)

    def _detect(self, ev: KeyEvent, det: Detection, res: FileResult) -> None:
        ds, op = ev.dataset, ev.operation
        for d, meta in det.for_event(ds, op):
            finding = d.match(ev)
            if finding is not None and det.accept(d, meta, finding):
                alert = make_alert(meta, finding)
                aid = alert["keytrail.alert.id"]
                prev = res.alerts.get(aid)
                res.alerts[aid] = alert if prev is None else merge_alerts(prev, alert)
        gates = self.gates
        for wd, meta in det.for_window(ds, op):
            entity = wd.select(ev)
            if entity is None:
                continue
            g = gates.get(meta.id)
            if g is not None:
                ts = ev.timestamp
                gk = (meta.id, entity, ts[:10])
                slot = (int(ts[11:13]) * 3600 + int(ts[14:16]) * 60
                        + int(ts[17:19])) // g[0]
                counts = res.gated.get(gk)
                if counts is None:
                    res.gated[gk] = {slot: 1}
                elif type(counts) is dict:
                    counts[slot] = counts.get(slot, 0) + 1
                    if len(counts) > SPARSE_SLOTS:
                        res.gated[gk] = dense_counts(counts, 86400 // g[0])
                else:
                    counts[slot] += 1
                continue
            bk = (meta.id, entity, bucket_start(ev.timestamp, wd.bucket_seconds))
            b = res.buckets.get(bk)
            if b is None:
                b = res.buckets[bk] = Bucket(bk[2])
            b.add(ev, wd.values(ev))
