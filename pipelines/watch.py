"""`keytrail watch`: process new files, appended lines and new S3 objects as they land.

Each cycle discovers units of new work (a new object, or the new byte range of a growing
file), processes them with the same FileProcessor as the batch pipeline, merges their
partials into the persisted RunState, recomputes inventory / graph / alerts, hands the
results to the sink, and only then commits the state (checkpoints + partials) atomically.
A kill -9 at any instant therefore resumes from a state that matches what the sink
acknowledged: units after the last commit are reprocessed, and since every document id is
deterministic the sink ends up with each event, key, edge and alert exactly once.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from parsers.base import KeytrailError
from parsers.timeutil import to_epoch_ms
from pipelines.config import KeytrailConfig
from pipelines.detection import load_detection
from pipelines.finalize import (
    finalize_state,
    merge_quarantine,
    write_local_store,
    write_signals,
)
from pipelines.process import FileProcessor, FileResult, tune_gc
from pipelines.sources import GZIP_MAGIC, SKIP_NAMES, InputFile, list_s3, s3_client
from pipelines.state import RunState, commit_state, read_state

HEAD_BYTES: Final[int] = 256
MAX_UNITS_PER_CYCLE: Final[int] = 200


def _head_hash(path: str, n: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(n), digest_size=8).hexdigest()


def _last_newline_end(path: str, start: int, size: int) -> int:
    """End offset just past the last newline in [start, size), or start if none."""
    with open(path, "rb") as fh:
        pos = size
        while pos > start:
            step = min(1 << 16, pos - start)
            fh.seek(pos - step)
            chunk = fh.read(step)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return pos - step + i + 1
            pos -= step
    return start


class Source(Protocol):
    name: str

    def discover(self, cp: dict[str, Any]) -> list[tuple[InputFile, Callable[[], None]]]:
        """New units of work; each comes with a callback that records it in `cp`."""


@dataclass
class LocalSource:
    """A directory (recursively) or a single file, including growing and rotated files.

    Files are tracked by (device, inode) so a rotated file (audit.log -> audit.log.1)
    continues where it was; a truncated or rewritten file (head bytes changed, or smaller
    than what was done) is read again from the start. A growing file is read up to its
    last complete line; a file quiet for `settle` seconds is read to its end (for
    whole-document formats without a final newline).
    """

    root: str
    settle: float = 2.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or f"file:{os.path.abspath(self.root)}"

    def _files(self) -> list[str]:
        p = Path(self.root)
        if p.is_file():
            return [str(p)]
        if not p.is_dir():
            raise KeytrailError(f"watch source {self.root} not found: pass an existing "
                                "directory, file or s3://bucket/prefix")
        return sorted(str(f) for f in p.rglob("*") if f.is_file()
                      and f.name not in SKIP_NAMES and not f.name.startswith("."))

    def discover(self, cp: dict[str, Any]) -> list[tuple[InputFile, Callable[[], None]]]:
        files = cp.setdefault("files", {})
        units: list[tuple[InputFile, Callable[[], None]]] = []
        now = time.time()
        for path in self._files():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            ident = f"{st.st_dev}:{st.st_ino}"
            entry = files.get(ident)
            size = st.st_size
            if size == 0:
                continue
            with open(path, "rb") as fh:
                is_gz = fh.read(2) == GZIP_MAGIC
            quiet = now - st.st_mtime >= self.settle
            start = 0
            gen = 0
            if entry is not None:
                gen = entry.get("gen", 0)
                same_head = _head_hash(path, min(HEAD_BYTES, entry["done"])) == entry["head"]
                if same_head and size >= entry["done"]:
                    start = entry["done"]
                    if is_gz or start == size:
                        continue
                else:
                    gen += 1  # truncated or rewritten in place: a new generation of the file
            if is_gz:
                if not quiet:
                    continue  # still being written; compressed streams are read whole
                end = size
            else:
                end = size if quiet else _last_newline_end(path, start, size)
            if end <= start:
                continue
            unit = InputFile(path, size, "", start, -1 if (start == 0 and end == size) else end,
                             generation=f"{ident}.{gen}")

            def record(ident: str = ident, path: str = path, end: int = end,
                       gen: int = gen) -> None:
                files[ident] = {"path": path, "done": end, "gen": gen,
                                "head": _head_hash(path, min(HEAD_BYTES, end))}

            units.append((unit, record))
        return units


@dataclass
class S3Source:
    """New objects under an s3:// prefix (ListObjectsV2 paging with StartAfter).

    Every processed object is remembered with its ETag, so re-uploaded objects are
    processed again and objects that land out of key order are not missed; `start_after`
    skips listing below a key the operator knows is fully processed.
    """

    uri: str
    start_after: str | None = None
    client: Any = None
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.uri

    def discover(self, cp: dict[str, Any]) -> list[tuple[InputFile, Callable[[], None]]]:
        seen = cp.setdefault("seen", {})
        client = self.client = self.client or s3_client()
        units: list[tuple[InputFile, Callable[[], None]]] = []
        for obj in list_s3(self.uri, self.start_after, client):
            if seen.get(obj.uri) == obj.etag:
                continue

            def record(uri: str = obj.uri, etag: str = obj.etag) -> None:
                seen[uri] = etag

            units.append((obj, record))
        return units


class WatchSink(Protocol):
    def deliver(self, out: Path, results: list[FileResult], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]],
                delivered: dict[str, str]) -> dict[str, int]:
        """Write a cycle's results; return counts; raise to refuse the commit."""


class LocalWatchSink:
    """The local store, rewritten each cycle (event shards are written per unit)."""

    def deliver(self, out: Path, results: list[FileResult], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]],
                delivered: dict[str, str]) -> dict[str, int]:
        write_local_store(out, summary, inventory, edges, resources, alerts)
        return {"dead_lettered": 0}


class SearchWatchSink:
    """Elasticsearch / OpenSearch: the cycle's new event shards plus the derived records.

    Documents carry deterministic _ids, so a cycle replayed after a crash overwrites what
    it wrote before; anything the engine still refuses is dead-lettered, never dropped.
    Alerts derived from inventory and windows are recomputed every cycle; one whose
    evidence no longer holds once later logs arrive is withdrawn from the engine, so the
    index always equals what a batch run over the same inputs produces. A journal of every
    alert id that may have reached the engine is made durable *before* each delivery, so a
    kill -9 between delivery and the state commit cannot leave a stale alert behind.
    """

    def __init__(self, args: Any, journal: Path) -> None:
        self.args = args
        self.journal = journal
        self.local = LocalWatchSink()

    def _read_journal(self) -> set[str]:
        if not self.journal.exists():
            return set()
        return set(orjson.loads(self.journal.read_bytes()))

    def _write_journal(self, ids: set[str]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        with tmp.open("wb") as fh:
            fh.write(orjson.dumps(sorted(ids)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.journal)

    def deliver(self, out: Path, results: list[FileResult], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]],
                delivered: dict[str, str]) -> dict[str, int]:
        from pipelines import sinks
        from pipelines.process import EVENTS_DIR, shard_name

        self.local.deliver(out, results, summary, inventory, edges, resources, alerts,
                           delivered)
        shards = [out / EVENTS_DIR / f"part-{shard_name(r.summary.get('unit', r.summary['path']))}"
                  ".parquet" for r in results if r.summary["events"]]
        current = {a["keytrail.alert.id"] for a in alerts}
        maybe_sent = self._read_journal()
        self._write_journal(maybe_sent | current)
        withdrawn = sorted(maybe_sent - current)
        report = sinks.deliver(str(out), self.args, shards=shards, withdrawn_alerts=withdrawn)
        self._write_journal(current)
        dead = sum(int(c.get("dead_lettered", 0)) for c in report.values()
                   if isinstance(c, dict))
        return {"dead_lettered": dead}


@dataclass
class WatchMetrics:
    cycle: int
    at: str
    lag_seconds: float | None
    units_processed: int
    units_pending: int
    events: int
    events_per_second: float
    quarantined_total: int
    dead_lettered: int
    keys: int
    alerts: int

    def line(self) -> str:
        lag = "n/a" if self.lag_seconds is None else f"{self.lag_seconds:,.0f}s"
        return (f"[watch] cycle {self.cycle}: {self.units_processed} new units, "
                f"{self.units_pending} pending, {self.events:,} events "
                f"({self.events_per_second:,.0f}/s), lag {lag}, {self.keys} keys, "
                f"{self.alerts} alerts, quarantined {self.quarantined_total}, "
                f"dead-lettered {self.dead_lettered}")


@dataclass
class Watcher:
    sources: list[Source]
    out_dir: str
    state_dir: str
    config: KeytrailConfig
    sink: WatchSink = field(default_factory=LocalWatchSink)
    interval: float = 5.0
    quiet: bool = False

    def __post_init__(self) -> None:
        self.state_path = Path(self.state_dir) / "state.json"
        self.out = Path(self.out_dir)
        self.detection, self.inventory_dets = load_detection(self.config)
        tune_gc()
        self.processor = FileProcessor(self.out_dir, self.config.parse, self.config.graph_window,
                                       self.detection)
        self._stop = False

    def stop(self, *_: Any) -> None:
        self._stop = True

    def cycle(self) -> WatchMetrics:
        """One discover-process-deliver-commit cycle."""
        t0 = time.monotonic()
        st: RunState = read_state(self.state_path)
        work: list[tuple[InputFile, Callable[[], None]]] = []
        for src in self.sources:
            work.extend(src.discover(st.checkpoints.setdefault(src.name, {})))
        pending = max(0, len(work) - MAX_UNITS_PER_CYCLE)
        work = work[:MAX_UNITS_PER_CYCLE]
        results = []
        for unit, record in work:
            res = self.processor.process(unit)
            st.absorb(res)
            record()
            results.append(res)
        dead = 0
        if results or st.cycle == 0:
            summary, (inventory, edges, resources, alerts, signals) = finalize_state(
                st, self.config, self.detection, self.inventory_dets,
                [s.name for s in self.sources])
            merge_quarantine(self.out, sorted(_shards(self.out)), keep_shards=True)
            counts = self.sink.deliver(self.out, results, summary, inventory, edges, resources,
                                       alerts, st.delivered)
            write_signals(self.out, signals)
            dead = counts.get("dead_lettered", 0)
            st.cycle += 1
            commit_state(self.state_path, st)  # only after the sink acknowledged
            n_keys, n_alerts = len(inventory), len(alerts)
        else:
            n_keys, n_alerts = len(st.keys), len(st.alerts)
        events = sum(r.summary["events"] for r in results)
        dt = max(time.monotonic() - t0, 1e-6)
        lag = None
        if st.max_ts:
            lag = max(0.0, time.time() - to_epoch_ms(st.max_ts) / 1000)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        m = WatchMetrics(st.cycle, now, lag, len(results), pending, events, events / dt,
                         sum(sum(f["quarantined"].values()) for f in st.files.values()), dead,
                         n_keys, n_alerts)
        if results:
            with (self.out / "metrics.ndjson").open("ab") as fh:
                fh.write(orjson.dumps(m.__dict__) + b"\n")
        return m

    def run(self, once: bool = False) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while not self._stop:
            m = self.cycle()
            if not self.quiet and (m.units_processed or once):
                print(m.line(), file=sys.stderr, flush=True)
            if once:
                return
            deadline = time.monotonic() + self.interval
            while not self._stop and time.monotonic() < deadline:
                time.sleep(min(0.2, self.interval))


def _shards(out: Path) -> list[str]:
    from pipelines.process import QUARANTINE_DIR

    return [p.stem for p in (out / QUARANTINE_DIR).glob("*.ndjson")]


def make_sources(specs: list[str], settle: float, start_after: str | None) -> list[Source]:
    sources: list[Source] = []
    for s in specs:
        if s.startswith("s3://"):
            sources.append(S3Source(s, start_after))
        else:
            if not Path(s).exists():
                raise KeytrailError(f"watch source {s} not found: pass an existing directory, "
                                    "file or s3://bucket/prefix")
            sources.append(LocalSource(s, settle))
    return sources
