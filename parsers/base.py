"""Parser contract: outcomes (event, skip, quarantine), options, errors and the registry.

Every input record yields exactly one outcome, so a file's accounting is
`records_in == events + skipped + quarantined` by construction.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, Final

from parsers.schema import KeyEvent

EXCERPT_BYTES: Final[int] = 512
MAX_LINE_BYTES: Final[int] = 1 << 20  # one record may not exceed 1 MiB
MAX_DOCUMENT_BYTES: Final[int] = 256 << 20  # a whole-file JSON document (S3 delivery)


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


def excerpt(raw: bytes | str, limit: int = EXCERPT_BYTES) -> str:
    """Bounded, printable excerpt of a raw record for the quarantine."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    text = raw[:limit].decode("utf-8", "replace")
    return text + ("…" if len(raw) > limit else "")


def quarantine(
    reason: str,
    path: str,
    offset: int,
    raw: bytes | str,
    dataset: str | None = None,
    detail: str | None = None,
) -> Quarantined:
    return Quarantined(reason, path, offset, excerpt(raw), dataset, detail)


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
