"""Local store: Parquet datasets and NDJSON/JSON files under the output directory.

Writes go through pipelines.outdir (atomic, unpredictable temp names, no symlink followed)
and are deterministic (sorted rows, no wall-clock
values), so re-running on the same input gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parsers.escaping import json_bytes
from parsers.schema import FIELDS, KeyEvent
from pipelines.outdir import AtomicFile, atomic_file, atomic_write

EVENT_BATCH: Final[int] = 20_000
_EVENT_SPECS = tuple(f for f in FIELDS if f.attr not in ("extra",))
_ARROW_TYPES: Final[dict[str, pa.DataType]] = {
    "keyword": pa.string(),
    "text": pa.string(),
    "ip": pa.string(),
    "long": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.string(),
}


def events_schema() -> pa.Schema:
    fields = []
    for spec in _EVENT_SPECS:
        t = pa.timestamp("ms", tz="UTC") if spec.name == "@timestamp" else _ARROW_TYPES[spec.type]
        fields.append(pa.field(spec.name, pa.list_(t) if spec.array else t))
    fields.append(pa.field("extra", pa.string()))  # vendor leftovers as a JSON object
    return pa.schema(fields)


EVENTS_SCHEMA: Final[pa.Schema] = events_schema()
# The same columns named by KeyEvent attribute, the timestamp still a string.
_ATTR_SCHEMA: Final[pa.Schema] = pa.schema([
    pa.field(spec.attr, pa.string() if spec.name == "@timestamp" else f.type)
    for spec, f in zip(_EVENT_SPECS, EVENTS_SCHEMA, strict=False)])


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
                        + b"\n")


def write_ndjson(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write(path, b"".join(
        json_bytes(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows))


class EventShardWriter:
    """Streams KeyEvents of one input file into one Parquet file, in input order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: AtomicFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._batch: list[KeyEvent] = []
        self.count = 0

    def add(self, ev: KeyEvent) -> None:
        self._batch.append(ev)
        if len(self._batch) >= EVENT_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._batch and self._writer is not None:
            return
        batch = self._batch
        # Arrow reads the instance dicts itself (unset fields are class defaults: absent
        # keys, read as null); that is several times faster than transposing in Python.
        attrs = pa.Table.from_pylist([e.__dict__ for e in batch], schema=_ATTR_SCHEMA)
        cols: list[pa.Array | pa.ChunkedArray] = []
        for spec, column in zip(_EVENT_SPECS, attrs.columns, strict=True):
            if spec.name == "@timestamp":
                # Casting 'YYYY-MM-DDTHH:MM:SS.mmmZ' with a zone is ~100x slower in Arrow
                # than casting the naive prefix and then attaching UTC.
                naive = pc.utf8_slice_codeunits(column, 0, 23)
                cols.append(naive.cast(pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC")))
            else:
                cols.append(column)
        dumps = orjson.dumps
        cols.append(pa.array([dumps(e.extra, option=orjson.OPT_SORT_KEYS).decode()
                              if e.extra else None for e in batch], pa.string()))
        table = pa.Table.from_arrays(cols, schema=EVENTS_SCHEMA)
        if self._writer is None:
            self._file = AtomicFile(self.path)
            self._writer = pq.ParquetWriter(self._file.fh, EVENTS_SCHEMA, compression="zstd")
        self._writer.write_table(table)
        self.count += len(batch)
        self._batch = []

    def close(self) -> None:
        self._flush()
        if self._writer is not None and self._file is not None:
            self._writer.close()
            self._file.commit()

    def abort(self) -> None:
        if self._writer is not None and self._file is not None:
            self._writer.close()
            self._file.discard()


def _arrow_friendly(rows: list[dict[str, Any]], nested: tuple[str, ...]) -> list[dict[str, Any]]:
    """Nested/variable fields become JSON strings so the Parquet schema stays stable."""
    out = []
    for r in rows:
        r2 = dict(r)
        for k in nested:
            if k in r2:
                r2[k] = orjson.dumps(r2[k], option=orjson.OPT_SORT_KEYS).decode()
        out.append(r2)
    return out


def write_table(path: Path, rows: list[dict[str, Any]], nested: tuple[str, ...] = ()) -> None:
    """Write records as one Parquet file (deterministic: caller sorts rows)."""
    table = pa.Table.from_pylist(_arrow_friendly(rows, nested)) if rows else pa.table({})
    with atomic_file(path) as fh:
        pq.write_table(table, fh, compression="zstd")


EVENT_READ_BATCH: Final[int] = 10_000


def iter_event_rows(out_dir: Path, shards: Iterable[Path] | None = None
                    ) -> Iterator[dict[str, Any]]:
    """Events of a local store (or of the given shards) as flat dicts, batch by batch."""
    paths = sorted((out_dir / "events").glob("*.parquet")) if shards is None else sorted(shards)
    for shard in paths:
        pf = pq.ParquetFile(shard)
        for batch in pf.iter_batches(batch_size=EVENT_READ_BATCH):
            yield from flat_rows(batch)


def flat_rows(batch: pa.RecordBatch | pa.Table) -> Iterator[dict[str, Any]]:
    """Rows of an events table as flat dicts (KeyEvent.to_flat form: extra merged in)."""
    for r in batch.to_pylist():
        ts = r.get("@timestamp")
        if ts is not None:
            r["@timestamp"] = (ts.strftime("%Y-%m-%dT%H:%M:%S.")
                               + f"{ts.microsecond // 1000:03d}Z")
        extra = r.pop("extra", None)
        if extra:
            r.update(orjson.loads(extra))
        yield {k: v for k, v in r.items() if v is not None and v != []}


def read_events(out_dir: Path) -> list[dict[str, Any]]:
    """All events of a local store as flat dicts, sorted by (@timestamp, event.id)."""
    rows = list(iter_event_rows(out_dir))
    rows.sort(key=lambda r: (r["@timestamp"], r["event.id"]))
    return rows
