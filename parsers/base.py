"""Parser contract: outcomes (event, skip, quarantine), options, errors and the registry.

Every input record yields exactly one outcome. The framing layer (parsers/framing.py)
counts the records it frames independently of the outcomes, so a file's accounting
`records_in == events + skipped + quarantined` is a check, not an identity.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, Final, TypeVar

from parsers.schema import KeyEvent
from parsers.scrub import scrub_text
from parsers.timeutil import BadTimestamp

EXCERPT_BYTES: Final[int] = 512
# One record (line or container element) may not exceed 1 MiB: CloudTrail events are at
# most 256 KB, an Event Hubs message (a whole {"records":[...]} batch line) at most 1 MB.
MAX_LINE_BYTES: Final[int] = 1 << 20
# A JSON document read whole: only shapes that are not streamed (an envelope, a digest
# file, a subscription payload); record containers ({"Records":[...]}, {"records":[...]},
# {"events":[...]}, arrays) are streamed element by element whatever their size.
MAX_DOCUMENT_BYTES: Final[int] = 256 << 20
MAX_JSON_DEPTH: Final[int] = 1024  # orjson's fixed nesting limit (arrays/objects), not a knob


class KeytrailError(Exception):
    """Base of every error keytrail raises on purpose; carries where it happened."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if self.offset is not None:
                where += f"@{self.offset}"
            where += ": "
        return where + self.message


class ParseError(KeytrailError):
    """A parser could not handle its input at all (not a per-record problem)."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed record that is deliberately out of scope (counted by reason)."""

    reason: str
    path: str
    offset: int


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record that could not become a KeyEvent: reason, provenance, bounded raw excerpt."""

    reason: str
    path: str
    offset: int
    excerpt: str
    dataset: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "dataset": self.dataset,
            "log.file.path": self.path,
            "log.offset": self.offset,
            "excerpt": self.excerpt,
        }


ParseOutcome = KeyEvent | Skipped | Quarantined


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """Knobs parsers honour. Defaults are what `keytrail run` uses without a config file."""

    vault_cluster: str = "default"
    include_original: bool = False
    redact_encryption_context: bool = False
    max_line_bytes: int = MAX_LINE_BYTES
    max_document_bytes: int = MAX_DOCUMENT_BYTES


def json_error(msg: str) -> tuple[str, str]:
    """(quarantine reason, detail) for a JSON decoder error message: `truncated_record`
    when the JSON ends early, `nesting_too_deep` past MAX_JSON_DEPTH, else `invalid_json`."""
    if "unexpected end of data" in msg or msg.startswith("unexpected end"):
        return "truncated_record", msg
    if "depth limit exceeded" in msg or "recursion limit" in msg.lower():
        return "nesting_too_deep", (f"JSON nested deeper than {MAX_JSON_DEPTH} levels (the "
                                    f"decoder's fixed limit, MAX_JSON_DEPTH): {msg}")
    return "invalid_json", msg


def excerpt(raw: bytes | str, limit: int = EXCERPT_BYTES) -> str:
    """Bounded excerpt of a raw record for the quarantine, secrets scrubbed (scrub.py):
    it is stored and shown like any other output."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    text = scrub_text(raw[:limit].decode("utf-8", "replace"))
    return text + ("…" if len(raw) > limit else "")


def quarantine(
    reason: str,
    path: str,
    offset: int,
    raw: bytes | str,
    dataset: str | None = None,
    detail: str | None = None,
) -> Quarantined:
    return Quarantined(reason, path, offset, excerpt(raw), dataset,
                       scrub_text(detail) if detail else detail)


def record_failure(exc: Exception, path: str, offset: int, raw: bytes | str,
                   dataset: str | None) -> Quarantined:
    """The outcome of a record whose parsing raised: quarantined, never a stopped file.

    A timestamp no conversion accepts is `bad_timestamp`; anything else is a parser
    defect on hostile input (`parser_error`, the exception type in the detail).
    """
    if isinstance(exc, BadTimestamp):
        return quarantine("bad_timestamp", path, offset, raw, dataset,
                          f"unreadable time {str(exc)[:64]!r}")
    return quarantine("parser_error", path, offset, raw, dataset,
                      f"{type(exc).__name__} while parsing this record")


_F = TypeVar("_F", bound=Callable[..., Any])
# Argument names per-record functions use for the record's bytes / decoded record.
_RAW_ARGS: Final = ("raw", "line")
_RECORD_ARGS: Final = ("record", "rec", "r", "item", "obj", "lines")


def per_record(dataset: str) -> Callable[[_F], _F]:
    """Decorate a function that turns ONE record into ONE outcome so that any exception
    it raises becomes that record's quarantine (record_failure) and the file goes on.

    The function must take `path` and `offset`, and `raw`/`line` (bytes) or the decoded
    record under one of _RECORD_ARGS, by those names. No cost unless it raises.
    """

    def decorate(fn: _F) -> _F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                a = sig.bind_partial(*args, **kwargs).arguments
                raw = next((a[n] for n in _RAW_ARGS if isinstance(a.get(n), bytes | str)), None)
                if raw is None:
                    rec = next((a[n] for n in _RECORD_ARGS if n in a), None)
                    raw = _dump(rec)
                return record_failure(exc, str(a.get("path")), int(a.get("offset") or 0), raw,
                                      dataset)

        return guarded  # type: ignore[return-value]

    return decorate


def _dump(rec: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(rec, default=str)
    except (TypeError, orjson.JSONEncodeError):
        return repr(rec).encode("utf-8", "replace")


def stable_id(*parts: object) -> str:
    """The one place ids are computed: 32 hex chars of BLAKE2b over the parts.

    Each part is preceded by a 0x1F separator; str parts are UTF-8, bytes parts raw.
    """
    chunks = [b""]
    for p in parts:
        chunks.append(p if isinstance(p, bytes) else str(p).encode("utf-8", "surrogatepass"))
    return hashlib.blake2b(b"\x1f".join(chunks), digest_size=16).hexdigest()


class LogParser(ABC):
    """A parser for one log family. Pure: it reads only the bytes it is given.

    `sniff` scores the first bytes of a (decompressed) file from 0 (not mine) to 100
    (certainly mine); the highest score wins format detection.
    """

    id: ClassVar[str]
    dataset: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, options: ParseOptions | None = None) -> None:
        self.options = options or ParseOptions()

    @abstractmethod
    def sniff(self, head: bytes) -> int:
        """Confidence 0-100 that a file starting with `head` is in this format."""

    @abstractmethod
    def parse(self, stream: IO[bytes], path: str) -> Iterator[ParseOutcome]:
        """Yield exactly one outcome per input record of the (decompressed) stream."""

    # Live mode reads a growing file in consecutive byte ranges. A parser whose outcomes
    # depend on earlier records (Vault request/response pairing) keeps that state in
    # `carry`, a JSON-able list with absolute offsets that the watcher checkpoints with
    # the file's offset. The ranges parsed in order with `final=True` on the last one give
    # exactly the outcomes of `parse` over the whole file.
    offset_extras: ClassVar[tuple[str, ...]] = ()  # extra fields that hold byte offsets

    def parse_range(self, stream: IO[bytes], path: str, carry: list[Any], base: int,
                    final: bool) -> Iterator[ParseOutcome]:
        """Outcomes of one byte range starting at `base` (offsets relative to it);
        `carry` is read and replaced in place. Stateless parsers need no override."""
        return self.parse(stream, path)


@dataclass
class ParserRegistry:
    """Explicit id -> parser class registry; a duplicate id is an error."""

    classes: dict[str, type[LogParser]] = field(default_factory=dict)

    def register(self, cls: type[LogParser]) -> type[LogParser]:
        if cls.id in self.classes:
            raise KeytrailError(f"duplicate parser id {cls.id!r}")
        self.classes[cls.id] = cls
        return cls

    def create_all(self, options: ParseOptions | None = None) -> list[LogParser]:
        return [cls(options) for cls in self.classes.values()]

    def get(self, parser_id: str, options: ParseOptions | None = None) -> LogParser:
        try:
            return self.classes[parser_id](options)
        except KeyError:
            known = ", ".join(sorted(self.classes))
            raise KeytrailError(f"unknown parser {parser_id!r}; known: {known}") from None


REGISTRY: Final[ParserRegistry] = ParserRegistry()
register = REGISTRY.register
