"""Delivery to a search engine: batching, retries with backoff, dead letters, counts.

`SearchSink` holds everything both engines share; `ElasticsearchSink` and `OpenSearchSink`
only adapt their client's calls and errors to `EngineResponse` / `RetriableError` /
`EngineError`. Nothing is dropped silently: every document ends indexed, updated or in
the dead-letter file, and the counts add up.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import orjson

from dashboards.fields import FAMILIES
from parsers.base import KeytrailError
from parsers.escaping import json_bytes, search_document
from parsers.scrub import scrub_text
from pipelines.outdir import append_file
from pipelines.sinks.documents import Action

LOG = logging.getLogger("keytrail.sinks")
RETRIABLE_STATUS: Final[frozenset[int]] = frozenset({408, 429, 500, 502, 503, 504})
# Fewer round trips: on a loaded 2-core machine bench/delivery_rate.py measured 0.68x of
# opensearch-py's 4-thread parallel_bulk at 500 docs per request and 0.91x at 2000; idle,
# both sizes are ~1.15x (median of 3 interleaved rounds, one local node).
DEFAULT_BATCH_DOCS: Final[int] = 2000
DEFAULT_BATCH_BYTES: Final[int] = 5 << 20
MGET_CHUNK: Final[int] = 500


class SinkError(KeytrailError):
    """The sink cannot be used (unreachable, refused, misconfigured)."""


class EngineUnreachable(SinkError):
    """No answer from the engine (connection refused, timeout, 5xx): may come back."""


class RetriableError(Exception):
    """A whole request failed for a reason worth retrying (connection loss, 429, 5xx)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class EngineError(Exception):
    """A request failed for a reason retrying will not fix (4xx other than 408/429)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass
class EngineResponse:
    status: int
    body: Any


@dataclass
class FamilyCounts:
    """Per index family: indexed (new _id), updated (same _id existed), failed (not in the
    engine at the end), dead_lettered (written to the dead-letter file), retried (item
    attempts that had to be repeated)."""

    indexed: int = 0
    updated: int = 0
    failed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    deleted: int = 0  # live mode: withdrawn alerts removed (or already absent)

    def as_dict(self) -> dict[str, int]:
        return {"indexed": self.indexed, "updated": self.updated, "failed": self.failed,
                "dead_lettered": self.dead_lettered, "retried": self.retried,
                "deleted": self.deleted}


@dataclass
class DeliveryReport:
    families: dict[str, FamilyCounts] = field(
        default_factory=lambda: {f: FamilyCounts() for f in FAMILIES})
    dead_letter_path: str | None = None
    # Dead-lettered because the engine was unavailable (no answer, 429, 5xx), not because
    # it refused the document: sending the same documents later can succeed.
    unavailable: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: c.as_dict() for f, c in self.families.items()}
        out["dead_letter_path"] = self.dead_letter_path
        out["unavailable"] = self.unavailable
        return out

    @property
    def sent(self) -> int:
        return sum(c.indexed + c.updated + c.failed for c in self.families.values())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base * 2^attempt, capped, `max_retries` retries."""

    max_retries: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        d: float = min(self.max_seconds, self.base_seconds * (2.0 ** attempt))
        return d * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto


class DeadLetterFile:
    """Append-only NDJSON: one line per document the engine did not take, with the bulk
    action, the document and the last error, so `replay` can send it again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def write(self, action: Action, error: str, status: int | None, attempts: int) -> None:
        if self._fh is None:
            self._fh = append_file(self.path)
        entry = {**action.to_dict(), "error": scrub_text(error), "status": status,
                 "attempts": attempts}
        self._fh.write(json_bytes(entry, option=orjson.OPT_SORT_KEYS) + b"\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_dead_letters(path: Path) -> Iterator[Action]:
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise KeytrailError(f"dead-letter file {path} not found; pass the path printed by the "
                            "run (default <out>/dead_letter.ndjson)") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Action.from_dict(orjson.loads(line))
            except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
                raise KeytrailError(f"{path}:{n}: not a keytrail dead-letter record; pass a "
                                    "file written by 'keytrail run' or 'keytrail replay'") from None


def _batches(actions: Iterable[Action], max_docs: int, max_bytes: int
             ) -> Iterator[list[tuple[Action, bytes]]]:
    batch: list[tuple[Action, bytes]] = []
    size = 0
    for a in actions:
        lines = orjson.dumps(a.header()) + b"\n"
        if a.op != "delete":
            lines += search_document(a.body()) + b"\n"
        if batch and (len(batch) >= max_docs or size + len(lines) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((a, lines))
        size += len(lines)
    if batch:
        yield batch


class SearchSink(ABC):
    """Bulk delivery with retries and dead letters; engines implement the transport."""

    engine: str = "search engine"

    def __init__(self, url: str, *, prefix: str = "keytrail",
                 retry: RetryPolicy | None = None,
                 batch_docs: int = DEFAULT_BATCH_DOCS, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self.prefix = prefix
        self.retry = retry or RetryPolicy()
        self.batch_docs = batch_docs
        self.batch_bytes = batch_bytes
        self.sleep = sleep
        self._down = False  # the engine stopped answering: one attempt per batch until back
        # The current retry episode (first failure until a bulk succeeds or the delivery
        # ends): logged as one line with its count, never one line per request.
        self._episode: tuple[str, int, float] | None = None  # reason, retries, start

    def _retrying(self, reason: str, n: int = 1) -> None:
        r = self._episode
        self._episode = (r[0] if r else reason, (r[1] if r else 0) + n,
                         r[2] if r else time.monotonic())

    def _episode_end(self, outcome: str) -> None:
        if self._episode is None:
            return
        reason, n, t0 = self._episode
        self._episode = None
        LOG.warning("%s at %s: %s; %d retried requests over %.1fs, then %s", self.engine,
                    self.url, reason[:200], n, time.monotonic() - t0, outcome)

    # --- transport, per engine ---------------------------------------------------------

    @abstractmethod
    def request(self, method: str, path: str, body: Any = None,
                params: dict[str, str] | None = None) -> EngineResponse:
        """One HTTP request. Raises RetriableError / EngineError; 404 is returned."""

    @abstractmethod
    def bulk(self, payload: bytes) -> dict[str, Any]:
        """POST _bulk; raises RetriableError on connection loss / 429 / 5xx."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the client's connections."""

    # --- shared -----------------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """The engine's root info; a clear SinkError when it cannot be used."""
        try:
            resp = self.request("GET", "/")
        except RetriableError as exc:
            raise EngineUnreachable(f"cannot reach {self.engine} at {self.url} ({exc.reason}); "
                                    "check --sink-url, that the engine is running, and "
                                    "--ca-certs for TLS") from None
        except EngineError as exc:
            if exc.status in (401, 403):
                raise SinkError(f"{self.engine} at {self.url} refused the credentials (HTTP "
                                f"{exc.status}); set KEYTRAIL_SINK_API_KEY, or --sink-user "
                                "with KEYTRAIL_SINK_PASSWORD, or --credentials-file") from None
            raise SinkError(f"{self.engine} at {self.url} answered HTTP {exc.status}: "
                            f"{exc.reason}") from None
        if resp.status == 404 or not isinstance(resp.body, dict):
            raise SinkError(f"{self.url} does not look like {self.engine} (GET / answered "
                            f"{resp.status}); check --sink and --sink-url")
        return resp.body

    def deliver(self, actions: Iterable[Action], dead_letter: Path,
                report: DeliveryReport | None = None) -> DeliveryReport:
        """Send every action; what still fails after retries goes to `dead_letter`."""
        report = report or DeliveryReport()
        dlq = DeadLetterFile(dead_letter)
        try:
            for batch in _batches(self._whole(actions), self.batch_docs, self.batch_bytes):
                self._send_batch(batch, report, dlq)
        finally:
            self._episode_end("gave up: the rest was dead-lettered" if self._down
                              else "delivered")
            dlq.close()
        lost = sum(c.dead_lettered for c in report.families.values())
        if lost:
            report.dead_letter_path = str(dead_letter)
            LOG.debug("%d documents dead-lettered to %s", lost, dead_letter)
        return report

    def _whole(self, actions: Iterable[Action]) -> Iterator[Action]:
        """`update` actions (alerts) become whole-document `index` writes that keep the
        analyst-owned field of the stored version, read first with one _mget per chunk
        (no server-side script: painless is not on every node). If the stored versions
        cannot be read, the updates go as they are (partial; the field is kept anyway)."""
        chunk: list[Action] = []

        def resolve() -> Iterator[Action]:
            if not chunk:
                return
            try:
                resp = self.request("POST", "/_mget", {"docs": [
                    {"_index": a.index, "_id": a.id} for a in chunk]})
                docs = resp.body.get("docs") if isinstance(resp.body, dict) else None
            except (RetriableError, EngineError):
                docs = None
            if not isinstance(docs, list) or len(docs) != len(chunk):
                yield from chunk
            else:
                for a, d in zip(chunk, docs, strict=True):
                    found = isinstance(d, dict) and d.get("found")
                    yield a.whole(d.get("_source") if found else None)
            chunk.clear()

        for a in actions:
            if a.op == "update":
                chunk.append(a)
                if len(chunk) >= MGET_CHUNK:
                    yield from resolve()
                continue
            yield from resolve()  # keep the order of the stream
            yield a
        yield from resolve()

    def _send_batch(self, batch: list[tuple[Action, bytes]], report: DeliveryReport,
                    dlq: DeadLetterFile) -> None:
        pending = batch
        attempt = 0
        last_error = ""
        last_status: int | None = None
        while pending:
            payload = b"".join(lines for _, lines in pending)
            try:
                result = self.bulk(payload)
            except RetriableError as exc:
                last_error, last_status = exc.reason, exc.status
                self._retrying(exc.reason)
                if self._down or attempt >= self.retry.max_retries:
                    self._down = True
                    break
                self._count_retries(pending, report)
                self.sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            except EngineError as exc:
                # The request as a whole was refused (e.g. 413, 400): no item was applied.
                for action, _ in pending:
                    self._dead_letter(action, exc.reason, exc.status, attempt + 1, report=report,
                                      dlq=dlq)
                return
            self._down = False
            items = result.get("items", [])
            if len(items) != len(pending):
                last_error = f"bulk answered {len(items)} items for {len(pending)} actions"
                break
            retry_next: list[tuple[Action, bytes]] = []
            for (action, lines), item in zip(pending, items, strict=True):
                (_op, res), = item.items()
                status = int(res.get("status", 0))
                counts = report.families[action.family]
                if action.op == "delete" and status in (200, 404):
                    counts.deleted += 1  # 404: already gone, which is what was asked
                    continue
                if 200 <= status < 300:
                    if res.get("result") == "created" or status == 201:
                        counts.indexed += 1
                    else:
                        counts.updated += 1
                    continue
                err = _item_error(res)
                if status in RETRIABLE_STATUS and attempt < self.retry.max_retries:
                    retry_next.append((action, lines))
                    last_error, last_status = err, status
                else:
                    self._dead_letter(action, err, status, attempt + 1, report=report, dlq=dlq)
            pending = retry_next
            if not pending:
                self._episode_end("delivered")
            else:
                self._retrying(last_error, len(pending))
                self._count_retries(pending, report)
                self.sleep(self.retry.delay(attempt))
                attempt += 1
        for action, _ in pending:
            self._dead_letter(action, last_error, last_status, attempt + 1, report=report,
                              dlq=dlq)

    @staticmethod
    def _count_retries(pending: list[tuple[Action, bytes]], report: DeliveryReport) -> None:
        for action, _ in pending:
            report.families[action.family].retried += 1

    @staticmethod
    def _dead_letter(action: Action, error: str, status: int | None, attempts: int, *,
                     report: DeliveryReport, dlq: DeadLetterFile) -> None:
        counts = report.families[action.family]
        counts.failed += 1
        if status is None or status in RETRIABLE_STATUS:
            report.unavailable += 1
        dlq.write(action, error, status, attempts)
        counts.dead_lettered += 1
        LOG.debug("dead-lettered %s %s/%s: %s", action.family, action.index, action.id, error)

    # --- read-back ----------------------------------------------------------------------

    def search_all(self, index: str, sort_field: str, query: dict[str, Any] | None = None,
                   page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching document's _source, paged with search_after on a unique field."""
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"size": page, "sort": [{sort_field: "asc"}],
                                    "query": query or {"match_all": {}}}
            if after is not None:
                body["search_after"] = after
            resp = self.request("POST", f"/{index}/_search", body,
                                params={"ignore_unavailable": "true"})
            if resp.status == 404:
                return
            hits = resp.body.get("hits", {}).get("hits", [])
            for h in hits:
                yield h["_source"]
            if len(hits) < page:
                return
            after = hits[-1]["sort"]


def _item_error(res: dict[str, Any]) -> str:
    err = res.get("error")
    if isinstance(err, dict):
        reason = f"{err.get('type', 'error')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict):
            reason += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return reason
    return str(err) if err else f"HTTP {res.get('status')}"
