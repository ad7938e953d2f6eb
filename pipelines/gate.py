"""Gated window detectors: counts while streaming, full buckets for the hot spans only.

Burst detectors (WindowDetector.gate() -> (window_seconds, threshold)) can only report a
span where some window holds at least `threshold` selected events. While streaming, the
pipeline keeps one count per bucket for them (an array per detector, entity and day: the
memory is bounded by entities x days, however many events arrive). At the end,
`hot_buckets` finds the buckets inside windows that reach the threshold on the merged
counts, and `recover_buckets` rebuilds exactly those buckets (evidence, distinct values,
first/last seen) from the run's event store. Every other bucket cannot be part of a finding,
so the detectors see the same episodes as with full buckets everywhere.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from detectors.base import MAX_BUCKET_VALUES, Bucket, bucket_start, hot_flags
from parsers.schema import KeyEvent
from parsers.timeutil import from_epoch_ms
from pipelines.process import BucketKey, Counts, Detection, GateKey, count_items
from pipelines.store import flat_rows

log = logging.getLogger(__name__)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _day_ms(day: str) -> int:
    d = datetime(int(day[:4]), int(day[5:7]), int(day[8:10]), tzinfo=UTC)
    return int((d - _EPOCH).total_seconds()) * 1000


def hot_buckets(gated: dict[GateKey, Counts], detection: Detection
                ) -> dict[str, dict[str, dict[str, int]]]:
    """detector id -> entity -> {bucket start: merged count} for buckets in hot windows."""
    series: dict[tuple[str, str], list[tuple[str, Counts]]] = {}
    for (did, entity, day), counts in gated.items():
        series.setdefault((did, entity), []).append((day, counts))
    hot: dict[str, dict[str, dict[str, int]]] = {}
    for (did, entity), days in sorted(series.items()):
        gate = detection.gates.get(did)
        if gate is None:
            continue
        secs, window_s, threshold = gate
        starts: list[int] = []
        vals: list[int] = []
        for day, counts in sorted(days, key=lambda dc: dc[0]):
            base = _day_ms(day)
            for i, n in count_items(counts):
                starts.append(base + i * secs * 1000)
                vals.append(n)
        if sum(vals) < threshold:
            continue
        flags = hot_flags(starts, vals, window_s * 1000, threshold)
        for s, v, f in zip(starts, vals, flags, strict=True):
            if f:
                hot.setdefault(did, {}).setdefault(entity, {})[from_epoch_ms(s)] = v
    return hot


def recover_buckets(events_dir: Path, hot: dict[str, dict[str, dict[str, int]]],
                    detection: Detection) -> dict[BucketKey, Bucket]:
    """Full buckets for the hot (detector, entity, start)s, rebuilt from the event shards."""
    if not hot:
        return {}
    wanted: dict[str, set[tuple[str, str]]] = {
        did: {(e, s) for e, starts in ents.items() for s in starts} for did, ents in hot.items()}
    # Bucket widths in use -> the hot bucket starts (epoch ms) to select rows by.
    by_width: dict[int, set[int]] = {}
    for did, ents in hot.items():
        width = detection.gates[did][0] * 1000
        dest = by_width.setdefault(width, set())
        for starts in ents.values():
            dest.update(_iso_ms(s) for s in starts)
    widths = {w: np.fromiter(sorted(v), dtype=np.int64) for w, v in by_width.items()}
    lo = min(int(v.min()) for v in widths.values())
    hi = max(int(v.max()) + w for w, v in widths.items())
    buckets: dict[BucketKey, Bucket] = {}
    values: dict[BucketKey, dict[str, set[str]]] = {}
    for shard in sorted(events_dir.glob("*.parquet")):
        pf = pq.ParquetFile(shard)
        if not _may_overlap(pf, lo, hi):
            continue
        ts = pf.read(columns=["@timestamp"]).column(0)
        ms = np.asarray(ts.cast(pa.int64()).fill_null(-1))
        mask = np.zeros(len(ms), dtype=bool)
        for w, hot_starts in widths.items():
            mask |= np.isin(ms - ms % w, hot_starts)
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        table = pf.read().take(pa.array(rows))
        for flat in flat_rows(table):
            _add(KeyEvent.from_flat(flat), detection, wanted, buckets, values)
    for bk, vals in values.items():
        b = buckets[bk]
        b.values = {k: set(sorted(v)[:MAX_BUCKET_VALUES]) for k, v in vals.items()}
    _check(hot, buckets)
    return buckets


def _add(ev: KeyEvent, detection: Detection, wanted: dict[str, set[tuple[str, str]]],
         buckets: dict[BucketKey, Bucket], values: dict[BucketKey, dict[str, set[str]]]
         ) -> None:
    for wd, meta in detection.for_window(ev.dataset, ev.operation):
        want = wanted.get(meta.id)
        if not want:
            continue
        entity = wd.select(ev)
        if entity is None:
            continue
        start = bucket_start(ev.timestamp, wd.bucket_seconds)
        if (entity, start) not in want:
            continue
        bk = (meta.id, entity, start)
        b = buckets.get(bk)
        if b is None:
            b = buckets[bk] = Bucket(start)
        b.add(ev)
        vals = values.setdefault(bk, {})
        for name, v in wd.values(ev).items():
            if v is not None:
                vals.setdefault(name, set()).add(v)


def _iso_ms(ts: str) -> int:
    d = datetime(int(ts[:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
                 int(ts[17:19]), tzinfo=UTC)
    return int((d - _EPOCH).total_seconds()) * 1000 + int(ts[20:23])


def _may_overlap(pf: pq.ParquetFile, lo: int, hi: int) -> bool:
    """False only when the shard's row-group statistics prove no event is in [lo, hi)."""
    md = pf.metadata
    try:
        col = pf.schema_arrow.get_field_index("@timestamp")
        for i in range(md.num_row_groups):
            st = md.row_group(i).column(col).statistics
            if st is None or not st.has_min_max:
                return True
            mn, mx = st.min, st.max
            mn_ms = int(mn.timestamp() * 1000) if hasattr(mn, "timestamp") else int(mn)
            mx_ms = int(mx.timestamp() * 1000) if hasattr(mx, "timestamp") else int(mx)
            if mx_ms >= lo and mn_ms < hi:
                return True
        return False
    except (ValueError, TypeError, OverflowError):
        return True


def _check(hot: dict[str, dict[str, dict[str, int]]], buckets: dict[BucketKey, Bucket]) -> None:
    """The rebuilt buckets must hold exactly the counted events (else the store is stale)."""
    for did, ents in hot.items():
        for entity, starts in ents.items():
            for start, n in starts.items():
                b = buckets.get((did, entity, start))
                got = b.count if b is not None else 0
                if got != n:
                    log.warning("window gate: %s %s %s counted %d events, event store has %d",
                                did, entity, start, n, got)


def gated_buckets(events_dir: Path | None, gated: dict[GateKey, Counts],
                  detection: Detection | None) -> dict[BucketKey, Bucket]:
    """Buckets of gated detectors for the spans that can produce findings."""
    if detection is None or not gated or events_dir is None:
        return {}
    return recover_buckets(events_dir, hot_buckets(gated, detection), detection)

