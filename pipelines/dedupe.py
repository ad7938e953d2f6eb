"""Duplicate deliveries counted once: finds events stored more than once and keeps one copy.

The same event (same `event.id`, DESIGN.md section 5) can arrive twice: CloudTrail
re-delivery, overlapping exports, an organization trail next to an account trail, a
rotated file read again. Files are processed independently (and in parallel), so each
copy is folded into its file's partials; `drop_duplicates` runs once every unit's ids are
known (at Finalize, and in `keytrail watch` before each commit) and makes the run equal to
a run over the de-duplicated input:

- The index: for every unit, the uint64 prefix of each stored event's id, in shard row
  order (`pipelines.store.id_prefixes`, 8 bytes per event, carried with the partials).
  Prefixes that occur more than once are candidates; the candidate rows are read back from
  the event shards and grouped by their *full* id, so a prefix collision between different
  events never drops anything (exact; no probabilistic filter).
- The copy kept: the first by (committed before this cycle, `log.file.path`, `log.offset`,
  unit, row), the same copy the key history and alert/bucket evidence point at (they keep
  the smallest provenance per event id). In live mode a copy already committed always
  wins: committed shards and their ids are never rewritten, which keeps restarts exact;
  when a later copy sorts before it, history and evidence are pointed back at the kept
  copy (`RunState.repoint`), so live equals a batch run without the later copies.
- The other copies: folded into a partial with the same `FileProcessor.fold` that counted
  them, whose additive counters are subtracted from the run state (`RunState.retract`);
  their rows are removed from the shards; their file's summary moves them from `events`
  to `duplicates`, so `records_in == events + duplicates + skipped + quarantined`.

Without duplicates the cost is one sort of the prefixes; memory is the 8 bytes per event
of the index (numpy), plus Arrow columns for the candidate rows only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parsers.schema import KeyEvent
from pipelines.process import EVENTS_DIR, FileProcessor, FileResult, shard_name
from pipelines.state import RunState
from pipelines.store import EVENT_READ_BATCH, flat_rows, rewrite_shard

log = logging.getLogger(__name__)
_COLUMNS = ["event.id", "log.file.path", "log.offset"]


def shard_path(events_dir: Path, unit: str) -> Path:
    return events_dir / f"part-{shard_name(unit)}.parquet"


def _candidate_prefixes(arrays: list[Any], new: list[bool]) -> Any:
    """Prefixes held more than once, at least once by a unit not yet committed."""
    allp = np.concatenate(arrays)
    allp.sort()
    repeated = allp[1:][allp[1:] == allp[:-1]]
    if not len(repeated):
        return repeated
    repeated = np.unique(repeated)
    if not all(new):
        fresh = [a for a, n in zip(arrays, new, strict=True) if n]
        if not fresh:
            return repeated[:0]
        repeated = repeated[np.isin(repeated, np.concatenate(fresh))]
    return repeated


Rows = dict[str, Any]  # unit id -> sorted shard row numbers (numpy)


def _by_unit(units: list[str], unit_idx: Any, rows: Any) -> Rows:
    return {units[i]: np.sort(rows[unit_idx == i]) for i in np.unique(unit_idx).tolist()}


def find_duplicates(st: RunState, locate: Callable[[str], Path]) -> tuple[Rows, Rows]:
    """(rows holding a copy of an event kept elsewhere, kept rows that are not their
    event's first copy by (path, offset)), by unit. The second is only ever non-empty in
    live mode, where a committed copy is kept even when a later one sorts before it."""
    units = sorted(u for u, ids in st.ids.items() if len(ids))
    arrays = [np.asarray(st.ids[u], dtype=np.uint64) for u in units]
    new = [u not in st.committed for u in units]
    if not any(new):
        return {}, {}
    prefixes = _candidate_prefixes(arrays, new)
    if not len(prefixes):
        return {}, {}
    parts: list[pa.Table] = []
    for i, (unit, ids) in enumerate(zip(units, arrays, strict=True)):
        rows = np.flatnonzero(np.isin(ids, prefixes))
        if not len(rows):
            continue
        path = locate(unit)
        try:
            pf = pq.ParquetFile(path)
        except OSError:
            log.warning("dedupe: event shard %s of %s is missing; its events are not "
                        "checked for duplicates", path.name, unit)
            continue
        if pf.metadata.num_rows != len(ids):
            log.warning("dedupe: event shard %s of %s has %d rows, %d were written; its "
                        "events are not checked for duplicates", path.name, unit,
                        pf.metadata.num_rows, len(ids))
            continue
        t = pf.read(columns=_COLUMNS).take(pa.array(rows))
        n = len(rows)
        parts.append(pa.table({
            "id": t.column("event.id"),
            "tier": pa.array(np.full(n, _tier(st, unit), dtype=np.int8)),
            "path": t.column("log.file.path"),
            "offset": t.column("log.offset"),
            "unit": pa.array(np.full(n, i, dtype=np.int32)),
            "row": pa.array(rows.astype(np.int64)),
        }))
    if not parts:
        return {}, {}
    cand = pa.concat_tables(parts).sort_by([
        ("id", "ascending"), ("tier", "ascending"), ("path", "ascending"),
        ("offset", "ascending"), ("unit", "ascending"), ("row", "ascending")])
    ids_col = cand.column("id").combine_chunks()
    if len(ids_col) < 2:
        return {}, {}
    # A row is a duplicate when the row sorted before it has the same full id.
    same = pc.equal(ids_col.slice(1), ids_col.slice(0, len(ids_col) - 1)).fill_null(False)
    dup = np.concatenate([[False], np.asarray(same, dtype=bool)])
    unit_col = np.asarray(cand.column("unit"))
    row_col = np.asarray(cand.column("row"))
    dropped = _by_unit(units, unit_col[dup], row_col[dup])
    if not st.committed:
        return dropped, {}
    # Kept committed copies preceded, by (path, offset), by a dropped new copy.
    kept_of = np.flatnonzero(~dup)[np.cumsum(~dup) - 1]
    tier = np.asarray(cand.column("tier"))
    first = np.flatnonzero(dup & (tier[kept_of] == 0))
    paths = cand.column("path").to_pylist()
    offsets = cand.column("offset").to_pylist()
    late = {int(kept_of[i]) for i in first.tolist()
            if (paths[i], offsets[i]) < (paths[kept_of[i]], offsets[kept_of[i]])}
    idx = np.array(sorted(late), dtype=np.int64)
    return dropped, _by_unit(units, unit_col[idx], row_col[idx])


TAIL: Final[str] = "~tail"  # unit-id suffix of live mode's provisional end-of-file results


def _tier(st: RunState, unit: str) -> int:
    """Which copy wins first: committed (live), then this run's or cycle's units, then
    live mode's provisional tails (end-of-file outcomes recomputed every cycle)."""
    return 0 if unit in st.committed else 2 if unit.endswith(TAIL) else 1


def drop_duplicates(st: RunState, out_dir: Path, processor: FileProcessor,
                    staging: Path | None = None,
                    shard_of: Callable[[str], Path] | None = None) -> int:
    """Keep one copy of every event in the run state and the event store; returns how
    many copies were dropped. `processor` must fold events as the run did (same window,
    detectors and gating). In live mode the shards of units not yet committed are in the
    cycle's `staging` directory; `shard_of` names shards the default rule does not."""

    def locate(unit: str) -> Path:
        if shard_of is not None:
            return shard_of(unit)
        base = staging if staging is not None and unit not in st.committed else out_dir
        return shard_path(base / EVENTS_DIR, unit)

    dropped, repoint = find_duplicates(st, locate)
    if not dropped:
        return 0
    dup = FileResult(summary={})
    total = 0
    for unit in sorted(dropped):
        rows = dropped[unit]
        path = locate(unit)
        table = pq.ParquetFile(path).read()
        copies = table.take(pa.array(rows))
        processor.fold((KeyEvent.from_flat(r)
                        for batch in copies.to_batches(max_chunksize=EVENT_READ_BATCH)
                        for r in flat_rows(batch)), dup)
        keep = np.ones(table.num_rows, dtype=bool)
        keep[rows] = False
        rewrite_shard(path, keep, table)
        st.ids[unit] = np.asarray(st.ids[unit])[keep]
        f = st.files[unit]
        f["events"] -= len(rows)
        f["duplicates"] = f.get("duplicates", 0) + len(rows)
        total += len(rows)
    st.retract(dup)
    if repoint:
        st.repoint(_read_rows(locate, repoint), dup)
    return total


def _read_rows(locate: Callable[[str], Path], rows: Rows) -> list[KeyEvent]:
    out: list[KeyEvent] = []
    for unit in sorted(rows):
        table = pq.ParquetFile(locate(unit)).read().take(pa.array(rows[unit]))
        out += [KeyEvent.from_flat(r) for r in flat_rows(table)]
    return out
