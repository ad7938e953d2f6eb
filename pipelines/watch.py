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

import copy
import hashlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from parsers.base import MAX_LINE_BYTES, KeytrailError
from parsers.escaping import terminal
from parsers.timeutil import to_epoch_ms
from pipelines.config import KeytrailConfig
from pipelines.dedupe import TAIL, drop_duplicates
from pipelines.detection import load_detection
from pipelines.finalize import finalize_state, write_local_store, write_signals
from pipelines.outdir import append_file, atomic_write
from pipelines.process import (
    EVENTS_DIR,
    QUARANTINE_DIR,
    FileProcessor,
    FileResult,
    shard_name,
    tune_gc,
)
from pipelines.sources import GZIP_MAGIC, InputFile, list_s3, s3_client, scan_local_dir
from pipelines.state import RunState, commit_state, read_state

LOG = logging.getLogger("keytrail.watch")
HEAD_BYTES: Final[int] = 256
MAX_UNITS_PER_CYCLE: Final[int] = 50
# Bytes planned per cycle (and per unit of a growing file): a backlog is worked off in
# bounded cycles, so each cycle's results reach the sink quickly and latency recovers.
MAX_BYTES_PER_CYCLE: Final[int] = 32 << 20
STAGING: Final[str] = ".staging"
DEAD_LETTERS: Final[str] = "dead_letter.ndjson"
MAX_BACKOFF: Final[float] = 60.0
TAIL_PREFIX: Final[str] = "tail-"


def _digest(path: str, start: int, end: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(start)
        return hashlib.blake2b(fh.read(max(0, end - start)), digest_size=8).hexdigest()


def _fingerprint(path: str, done: int) -> list[str]:
    """Head and tail digests of the bytes [0, done): the identity of what was read."""
    return [_digest(path, 0, min(HEAD_BYTES, done)),
            _digest(path, max(0, done - HEAD_BYTES), done)]


def _last_end(path: str, start: int, size: int, sep: bytes) -> int:
    """Offset just past the last `sep` in [start, size), or start if none."""
    with open(path, "rb") as fh:
        pos = size
        while pos > start:
            step = min(1 << 16, pos - start)
            lo = max(start, pos - step - len(sep) + 1)
            fh.seek(lo)
            chunk = fh.read(pos - lo)
            i = chunk.rfind(sep)
            if i >= 0:
                return lo + i + len(sep)
            pos -= step
    return start


_SNIFFERS: list[Any] = []


def framing_of(head: bytes, complete: bool, quiet: bool = False) -> str | None:
    """How a growing file's records end: `lines` (a newline), `blocks` (a blank line;
    CloudHSM multi-line audit blocks) or `document` (the file's end, once it is quiet).
    None: not decidable yet (a JSON first line still being written). `head` holds the
    file's first line when it has one within MAX_LINE_BYTES (see `read_head`)."""
    from parsers.base import REGISTRY, ParseOptions
    from parsers.detect import SNIFF_BYTES, detect

    if head[:2] == GZIP_MAGIC:
        return "document"
    body = head.lstrip()
    nl = body.find(b"\n")
    if body[:1] in (b"{", b"["):
        if nl < 0:
            # No newline within a record's maximum size: one-line documents (S3 objects,
            # Key Vault blobs) are far longer than 64 KiB; once quiet, it is a document.
            return "document" if complete or (quiet and len(head) > MAX_LINE_BYTES) \
                else None
        try:
            orjson.loads(body[:nl])
        except orjson.JSONDecodeError:
            return "document"  # a pretty-printed or otherwise multi-line document
        return "lines"
    if not _SNIFFERS:
        _SNIFFERS.extend(REGISTRY.create_all(ParseOptions()))
    parser = detect(head, _SNIFFERS)
    if parser is None and not complete and len(head) < SNIFF_BYTES:
        return None  # maybe only the start of the first record: recognisable later
    return "blocks" if parser is not None and parser.id == "hsm.cloudhsm.text" else "lines"


def read_head(path: str) -> bytes:
    """The file's first 64 KiB, extended to its first newline (at most MAX_LINE_BYTES + 1
    bytes): enough to tell a line format from a one-line document."""
    with open(path, "rb") as fh:
        head = fh.read(64 << 10)
        while b"\n" not in head and len(head) <= MAX_LINE_BYTES:
            more = fh.read(1 << 20)
            if not more:
                break
            head += more
    return head


@dataclass
class Unit:
    """One unit of work: the input (a whole object or a fixed byte range), the callback
    that records it as done in the source checkpoint, and the parser continuation
    (`{"parser", "carry"}`, JSON) of a growing file, updated in place by processing."""

    input: InputFile
    record: Callable[[], None]
    resume: dict[str, Any] | None = None
    # After processing: were the bytes read the ones planned? (False: the file was
    # renamed, truncated or rewritten meanwhile; the unit is dropped and planned again.)
    verify: Callable[[], bool] = lambda: True
    landed: float | None = None  # when its bytes landed (mtime; None: discovery time)


class Source(Protocol):
    name: str

    def discover(self, cp: dict[str, Any]) -> list[Unit]:
        """New units of work; each comes with a callback that records it in `cp`."""

    def tails(self, cp: dict[str, Any]) -> list[Unit]:
        """Provisional end-of-file units: what batch would emit now at each file's end
        (requests still waiting for a response), recomputed every cycle, never recorded."""


@dataclass
class LocalSource:
    """A directory (recursively) or a single file, including growing and rotated files.

    A file is one entry of the checkpoint, keyed by (device, inode): a renamed file
    (audit.log -> audit.log.1) continues where it was and is never read again under its
    new name. Its head and tail digests of the bytes read so far are its fingerprint: a
    truncated or rewritten file starts a new generation from byte 0, and a new file that
    starts with exactly the bytes read from a truncated one (copytruncate rotation) takes
    over that file's offset. Each unit's end is fixed when it is planned: for line
    formats the last newline, for CloudHSM blocks the last blank line (or the end once
    the file is quiet for `settle` seconds), for whole documents the end once quiet.
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
        return [path for path, _real in scan_local_dir(str(p))[0]]

    def discover(self, cp: dict[str, Any]) -> list[Unit]:
        files: dict[str, Any] = cp.setdefault("files", {})
        orphans: list[dict[str, Any]] = cp.setdefault("orphans", [])
        now = time.time()
        seen: list[tuple[str, str, os.stat_result]] = []
        for path in self._files():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            seen.append((path, f"{st.st_dev}:{st.st_ino}", st))
        # Known files first: a truncation must be noticed before its copy is matched.
        seen.sort(key=lambda t: (t[1] not in files, t[0]))
        units: list[Unit] = []
        budget = MAX_BYTES_PER_CYCLE
        for path, ident, st in seen:
            size = st.st_size
            entry = files.get(ident)
            if entry is not None and entry["done"] and (
                    size < entry["done"] or _fingerprint(path, entry["done"]) != entry["fp"]):
                orphans.append(entry)  # truncated or rewritten in place
                entry = files[ident] = {"gen": entry["gen"] + 1, "done": 0, "fp": None,
                                        "framing": None, "resume": {}}
            if entry is None:
                entry = self._adopt(orphans, path, size) or {
                    "gen": 0, "done": 0, "fp": None, "framing": None, "resume": {}}
                files[ident] = entry
            entry["path"] = path
            start = entry["done"]
            if size <= start or budget <= 0:
                continue
            quiet = now - st.st_mtime >= self.settle
            if entry["framing"] is None:
                head = read_head(path)
                entry["framing"] = framing_of(head, quiet and len(head) == size, quiet)
            framing = entry["framing"]
            limit = min(size, start + max(budget, 1 << 20))
            if framing == "lines":
                end = _last_end(path, start, limit, b"\n")
                if end == start and limit < size:  # one line longer than the budget
                    end = _last_end(path, start, size, b"\n")
            elif framing == "blocks":
                end = _last_end(path, start, limit, b"\n\n")
            elif framing == "document":
                if start:  # a whole document that grew: it was rewritten
                    orphans.append(dict(entry))
                    entry.update(gen=entry["gen"] + 1, done=0, fp=None, resume={})
                    start = 0
                end = size if quiet else start
            else:
                end = start  # JSON first line still being written
            if end <= start:
                continue
            budget -= end - start
            unit = InputFile(path, size, "", start, end, generation=f"{ident}.{entry['gen']}")
            resume = entry["resume"]
            work = {"parser": resume.get("parser"), "carry": list(resume.get("carry", []))}
            fp = _fingerprint(path, end)
            sep = {"lines": b"\n", "blocks": b"\n\n"}.get(framing, b"")

            def record(entry: dict[str, Any] = entry, path: str = path, end: int = end,
                       work: dict[str, Any] = work, fp: list[str] = fp) -> None:
                entry.update(done=end, fp=fp, resume=work)

            def verify(path: str = path, ident: str = ident, end: int = end,
                       fp: list[str] = fp, sep: bytes = sep) -> bool:
                try:
                    st = os.stat(path)
                    if f"{st.st_dev}:{st.st_ino}" != ident or st.st_size < end:
                        return False
                    return _fingerprint(path, end) == fp and (
                        not sep or _digest(path, end - len(sep), end) == _digest_bytes(sep))
                except OSError:
                    return False

            units.append(Unit(unit, record, work, verify, st.st_mtime))
        return units

    @staticmethod
    def _adopt(orphans: list[dict[str, Any]], path: str, size: int) -> dict[str, Any] | None:
        """The truncated file whose read bytes this new file starts with (copytruncate)."""
        for i, o in enumerate(orphans):
            if o["done"] and size >= o["done"] and _fingerprint(path, o["done"]) == o["fp"]:
                return orphans.pop(i)
        return None

    def tails(self, cp: dict[str, Any]) -> list[Unit]:
        out: list[Unit] = []
        for ident, entry in sorted(cp.get("files", {}).items()):
            resume = entry.get("resume") or {}
            done = end = entry["done"]
            if entry.get("framing") == "blocks":
                # The last block has no blank line after it yet: batch would end it at the
                # end of the file, so it is read provisionally until its terminator comes.
                try:
                    size = os.stat(entry["path"]).st_size
                except FileNotFoundError:
                    size = done
                if size > done and _ends_line(entry["path"], size):
                    end = size
            if end == done and not resume.get("carry"):
                continue
            unit = InputFile(entry["path"], end, "", done, end,
                             generation=f"{ident}.{entry['gen']}")
            out.append(Unit(unit, lambda: None, {"parser": resume.get("parser"),
                                                 "carry": list(resume["carry"])}))
        return out


def _digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _ends_line(path: str, size: int) -> bool:
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


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

    def discover(self, cp: dict[str, Any]) -> list[Unit]:
        seen = cp.setdefault("seen", {})
        client = self.client = self.client or s3_client()
        units: list[Unit] = []
        for obj in list_s3(self.uri, self.start_after, client):
            if seen.get(obj.uri) == obj.etag:
                continue

            def record(uri: str = obj.uri, etag: str = obj.etag) -> None:
                seen[uri] = etag

            units.append(Unit(obj, record))
        return units

    def tails(self, cp: dict[str, Any]) -> list[Unit]:
        return []


class WatchSink(Protocol):
    def deliver(self, out: Path, shards: list[Path], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]]
                ) -> dict[str, int]:
        """Write a cycle's results (its new event shards, the derived records); return
        counts; raise to refuse the commit."""


class EngineUnavailable(Exception):
    """The engine did not acknowledge the cycle: it is not committed and is retried."""


class LocalWatchSink:
    """The local store's derived files, rewritten each cycle (event shards are promoted
    from the cycle's staging directory when the cycle commits)."""

    def deliver(self, out: Path, shards: list[Path], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]]
                ) -> dict[str, int]:
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
        atomic_write(self.journal, orjson.dumps(sorted(ids)), durable=True)

    def deliver(self, out: Path, shards: list[Path], summary: dict[str, Any],
                inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                resources: list[dict[str, Any]], alerts: list[dict[str, Any]]
                ) -> dict[str, int]:
        from pipelines import sinks
        from pipelines.sinks.engine import EngineUnreachable

        self.local.deliver(out, shards, summary, inventory, edges, resources, alerts)
        current = {a["keytrail.alert.id"] for a in alerts}
        maybe_sent = self._read_journal()
        self._write_journal(maybe_sent | current)
        withdrawn = sorted(maybe_sent - current)
        # Dead letters of the cycle go to staging: documents the engine could not take
        # because it was away are sent again by the retried cycle (never from an old
        # dead-letter file that could overwrite newer versions); only documents it
        # refused for their content are kept, in <out>/dead_letter.ndjson, on commit.
        try:
            report = sinks.deliver(str(out), self.args, shards=shards,
                                   withdrawn_alerts=withdrawn,
                                   dead_letter=out / STAGING / DEAD_LETTERS)
        except EngineUnreachable as exc:
            raise EngineUnavailable(str(exc)) from None
        if report.get("unavailable"):
            raise EngineUnavailable(f"{report['unavailable']:,} documents not acknowledged")
        self._write_journal(current)
        dead = sum(int(c.get("dead_lettered", 0)) for c in report.values()
                   if isinstance(c, dict))
        return {"dead_lettered": dead}


@dataclass
class WatchMetrics:
    """One cycle. Two different things are measured: `latency_*` is pipeline latency, from
    a unit's bytes landing (file mtime; an S3 object's discovery) to its documents being
    searchable (the sink acknowledged and refreshed), p50/p95 over the cycle's units;
    `event_freshness_seconds` is how old the newest event time is (large when replaying
    old logs, whatever the pipeline's speed)."""

    cycle: int
    at: str
    latency_p50_seconds: float | None
    units_processed: int
    units_pending: int
    events: int
    events_per_second: float
    quarantined_total: int
    dead_lettered: int
    keys: int
    alerts: int
    engine_down: bool = False
    latency_p95_seconds: float | None = None
    event_freshness_seconds: float | None = None

    def line(self) -> str:
        lat = "n/a" if self.latency_p50_seconds is None else (
            f"{self.latency_p50_seconds:,.1f}s p95 {self.latency_p95_seconds or 0:,.1f}s")
        fresh = "n/a" if self.event_freshness_seconds is None else \
            _duration(self.event_freshness_seconds)
        return (f"[watch] cycle {self.cycle}: {self.units_processed} new units, "
                f"{self.units_pending} pending, {self.events:,} events "
                f"({self.events_per_second:,.0f}/s), landed-to-searchable p50 {lat}, "
                f"newest event {fresh} old, {self.keys} keys, "
                f"{self.alerts} alerts, quarantined {self.quarantined_total}, "
                f"dead-lettered {self.dead_lettered}")


def overlay(st: RunState, extra: list[FileResult]) -> RunState:
    """`st` plus provisional results, without changing `st` (entries both touch are
    copied before merging; everything else is shared)."""
    if not extra:
        return st
    view = RunState(keys=dict(st.keys), edges=dict(st.edges), resources=dict(st.resources),
                    buckets=dict(st.buckets), gated=dict(st.gated), alerts=dict(st.alerts),
                    files=dict(st.files), max_ts=st.max_ts)
    for res in extra:
        for name in ("keys", "edges", "resources", "buckets", "gated", "alerts"):
            mine, theirs = getattr(view, name), getattr(res, name)
            for k in theirs:
                if k in mine:
                    mine[k] = copy.deepcopy(mine[k])
        view.absorb(res)
    return view


@dataclass
class Watcher:
    """Runs cycles. Each cycle's event and quarantine shards are written under
    `<out>/.staging/` and promoted into the store only after the state commit that
    records them; a cycle killed before its commit leaves a staging directory that the
    next start removes (one killed after it is promoted then), so no shard is ever kept
    twice, whatever the unit boundaries of the retried cycle."""

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
        self.staging = self.out / STAGING
        self.detection, self.inventory_dets = load_detection(self.config)
        tune_gc()
        self.processor = FileProcessor(str(self.staging), self.config.parse,
                                       self.config.graph_window, self.detection)
        self._stop = False
        self._recovered = False
        self._down_since: float | None = None
        self.backoff = 0.0  # seconds to wait before retrying an unacknowledged cycle

    def _outage(self, reason: str) -> None:
        """The engine did not acknowledge: keep the place, back off, try again."""
        self.backoff = min(MAX_BACKOFF, max(1.0, self.backoff * 2))
        if self._down_since is None:
            self._down_since = time.monotonic()
            LOG.warning("engine unavailable (%s); keeping the place and retrying (backoff up "
                        "to %.0fs)", reason[:300], MAX_BACKOFF)

    def stop(self, *_: Any) -> None:
        self._stop = True

    def _recover(self, st: RunState) -> None:
        """Finish (promote) or undo (remove) what a killed process left in staging."""
        marker = self.staging / "CYCLE"
        if marker.exists() and marker.read_text().strip() == str(st.cycle):
            self._promote()
        shutil.rmtree(self.staging, ignore_errors=True)

    def _promote(self) -> None:
        """Move the committed cycle's shards into the store (idempotent: rerun after a
        kill, it finishes the moves). Tail shards replace the previous cycle's. Documents
        the engine refused are appended to the store's dead letters."""
        dead = self.staging / DEAD_LETTERS
        if dead.exists():
            with (self.out / DEAD_LETTERS).open("ab") as fh:
                fh.write(dead.read_bytes())
            dead.unlink()
        for sub in (EVENTS_DIR, QUARANTINE_DIR):
            src, dst = self.staging / sub, self.out / sub
            dst.mkdir(parents=True, exist_ok=True)
            staged = {p.name for p in src.glob("*")} if src.exists() else set()
            for old in dst.glob(f"*{TAIL_PREFIX}*"):
                if old.name not in staged:
                    old.unlink(missing_ok=True)
            for name in sorted(staged):
                os.replace(src / name, dst / name)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _stage(self, unit: Unit, final: bool = False) -> FileResult:
        res = self.processor.process(unit.input, unit.resume, final)
        if final:  # a provisional tail: renamed so the next cycle's tail replaces it
            name = shard_name(unit.input.unit_id)
            for sub, fname in ((EVENTS_DIR, f"part-{name}.parquet"),
                               (QUARANTINE_DIR, f"{name}.ndjson")):
                p = self.staging / sub / fname
                if p.exists():
                    os.replace(p, p.with_name(fname.replace(name, TAIL_PREFIX + name)))
            res.summary["unit"] = f"{unit.input.unit_id}{TAIL}"
        return res

    def _shard_of(self, st: RunState) -> Callable[[str], Path]:
        """Where a unit's event shard is during a cycle: committed ones in the store, this
        cycle's in staging, provisional tails in staging under their tail name."""

        def shard(unit: str) -> Path:
            if unit.endswith(TAIL):
                name = TAIL_PREFIX + shard_name(unit[:-len(TAIL)])
            else:
                name = shard_name(unit)
            base = self.out if unit in st.committed else self.staging
            return base / EVENTS_DIR / f"part-{name}.parquet"

        return shard

    def _unstage(self, unit: Unit) -> None:
        name = shard_name(unit.input.unit_id)
        (self.staging / EVENTS_DIR / f"part-{name}.parquet").unlink(missing_ok=True)
        (self.staging / QUARANTINE_DIR / f"{name}.ndjson").unlink(missing_ok=True)

    def cycle(self) -> WatchMetrics:
        """One discover-process-deliver-commit cycle."""
        t0 = time.monotonic()
        st: RunState = read_state(self.state_path)
        if not self._recovered:
            self._recover(st)
        shutil.rmtree(self.staging, ignore_errors=True)
        work: list[Unit] = []
        discovered = time.time()
        for src in self.sources:
            work.extend(src.discover(st.checkpoints.setdefault(src.name, {})))
        pending = max(0, len(work) - MAX_UNITS_PER_CYCLE)
        work = work[:MAX_UNITS_PER_CYCLE]
        results = []
        done: list[Unit] = []
        for unit in work:
            res = self._stage(unit)
            if not unit.verify():  # the file changed under the read: planned again later
                self._unstage(unit)
                pending += 1
                continue
            st.absorb(res)
            unit.record()
            results.append(res)
            done.append(unit)
        meta = st.checkpoints.setdefault("_watch", {})
        if results:
            # New copies of events already counted (committed or in this cycle) are dropped.
            drop_duplicates(st, self.out, self.processor, self.staging)
        dead = 0
        tail_units = [u for src in self.sources
                      for u in src.tails(st.checkpoints.get(src.name, {}))]
        tail_sig = sorted([u.input.unit_id, u.input.end] for u in tail_units)
        if results or not self._recovered or tail_sig != meta.get("tails", []):
            tails = [self._stage(u, final=True) for u in tail_units]
            meta["tails"] = tail_sig
            view = overlay(st, tails)
            if tails:
                # Provisional end-of-file outcomes are events too: their copies of events
                # already counted are dropped (tails lose to every real unit), as in batch.
                view.ids, view.committed = {**st.ids, **view.ids}, st.committed
                drop_duplicates(view, self.out, self.processor, shard_of=self._shard_of(st))
            summary, (inventory, edges, resources, alerts, signals) = finalize_state(
                view, self.config, self.detection, self.inventory_dets,
                [s.name for s in self.sources])
            committed = sorted(_shards(self.out / QUARANTINE_DIR))
            staged = sorted(_shards(self.staging / QUARANTINE_DIR))
            merge_quarantine_dirs(self.out, [(self.out / QUARANTINE_DIR, n) for n in committed
                                             if TAIL_PREFIX not in n]
                                  + [(self.staging / QUARANTINE_DIR, n) for n in staged])
            shards = sorted((self.staging / EVENTS_DIR).glob("*.parquet"))
            try:
                counts = self.sink.deliver(self.out, shards, summary, inventory, edges,
                                           resources, alerts)
            except EngineUnavailable as exc:
                shutil.rmtree(self.staging, ignore_errors=True)
                self._outage(str(exc))
                return WatchMetrics(st.cycle, _now(), None, 0, len(work) + pending, 0, 0.0, 0,
                                    0, int(meta.get("keys", 0)), int(meta.get("alerts", 0)),
                                    engine_down=True)
            if self._down_since is not None:
                LOG.warning("engine back after %.0fs; the cycles it missed are delivered",
                            time.monotonic() - self._down_since)
                self._down_since, self.backoff = None, 0.0
            write_signals(self.out, signals)  # signals are local only (docs/alerting.md)
            dead = counts.get("dead_lettered", 0)
            st.cycle += 1
            meta.update(keys=len(inventory), alerts=len(alerts))
            self.staging.mkdir(parents=True, exist_ok=True)
            (self.staging / "CYCLE").write_text(str(st.cycle))
            commit_state(self.state_path, st)  # only after the sink acknowledged
            self._promote()
        self._recovered = True
        n_keys, n_alerts = int(meta.get("keys", 0)), int(meta.get("alerts", 0))
        events = sum(r.summary["events"] for r in results)
        dt = max(time.monotonic() - t0, 1e-6)
        searchable = time.time()
        latencies = [max(0.0, searchable - (u.landed or discovered)) for u in done]
        fresh = None
        if st.max_ts:
            fresh = round(max(0.0, searchable - to_epoch_ms(st.max_ts) / 1000), 3)
        m = WatchMetrics(st.cycle, _now(), _percentile(latencies, 0.5), len(results), pending,
                         events, events / dt,
                         sum(sum(f["quarantined"].values()) for f in st.files.values()), dead,
                         n_keys, n_alerts, latency_p95_seconds=_percentile(latencies, 0.95),
                         event_freshness_seconds=fresh)
        if results:
            with append_file(self.out / "metrics.ndjson") as fh:
                fh.write(orjson.dumps(m.__dict__) + b"\n")
        return m

    def run(self, once: bool = False) -> WatchMetrics | None:
        """Cycles until SIGTERM/SIGINT (or one with `once`); returns the last metrics."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        m = None
        while not self._stop:
            m = self.cycle()
            if not self.quiet and (m.units_processed or once) and not m.engine_down:
                print(terminal(m.line()), file=sys.stderr, flush=True)
            if once:
                return m
            deadline = time.monotonic() + (self.backoff if m.engine_down else self.interval)
            while not self._stop and time.monotonic() < deadline:
                time.sleep(min(0.2, self.interval))
        return m


def _duration(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:,.0f}{unit}"
    return f"{seconds:,.0f}s"


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _shards(qdir: Path) -> list[str]:
    return [p.stem for p in qdir.glob("*.ndjson")]


def merge_quarantine_dirs(out: Path, shards: list[tuple[Path, str]]) -> None:
    """quarantine.ndjson from committed and staged per-unit shards (atomic replace)."""
    tmp = out / ".quarantine.ndjson.tmp"
    out.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as fh:
        for d, name in shards:
            p = d / f"{name}.ndjson"
            if p.exists():
                fh.write(p.read_bytes())
    tmp.replace(out / "quarantine.ndjson")


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
