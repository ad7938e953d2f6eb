"""Format detection per file, by content: every registered parser scores the head bytes."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Final

from parsers.base import REGISTRY, LogParser, ParseOptions, ParseOutcome, Quarantined, quarantine
from parsers.scrub import redact_context_text

SNIFF_BYTES: Final[int] = 64 * 1024


def detect(head: bytes, parsers: list[LogParser] | None = None) -> LogParser | None:
    """The parser with the highest non-zero score for `head`, or None.

    Ties go to the parser registered first; a sniffer that raises scores 0 (detection
    must survive arbitrary bytes).
    """
    best: LogParser | None = None
    best_score = 0
    for parser in parsers if parsers is not None else REGISTRY.create_all(ParseOptions()):
        try:
            score = parser.sniff(head[:SNIFF_BYTES])
        except Exception:
            score = 0
        if score > best_score:
            best, best_score = parser, score
    return best


class _Rejoined(io.RawIOBase):
    """The head bytes already read for sniffing, followed by the rest of the stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_detected(
    stream: IO[bytes], parsers: list[LogParser] | None = None
) -> tuple[LogParser | None, IO[bytes]]:
    """Sniff `stream` and return the chosen parser and a stream positioned at byte 0."""
    head = stream.read(SNIFF_BYTES)
    return detect(head, parsers), _Rejoined(head, stream)  # type: ignore[return-value]


def parse_stream(
    stream: IO[bytes], path: str, parsers: list[LogParser] | None = None
) -> tuple[str | None, Iterator[ParseOutcome]]:
    """Detect the format of one file and parse it: (dataset or None, outcomes).

    A file no parser recognises is one quarantined record ('unrecognized_format').
    """
    parser, rejoined = open_detected(stream, parsers)
    if parser is None:
        head = rejoined.read(512)
        return None, iter([quarantine("unrecognized_format", path, 0, head)])
    outcomes = parser.parse(rejoined, path)
    if parser.options.redact_encryption_context:
        outcomes = _redact_quarantine_contexts(outcomes)
    return parser.dataset, outcomes


def _redact_quarantine_contexts(outcomes: Iterator[ParseOutcome]) -> Iterator[ParseOutcome]:
    """`redact_encryption_context: true` holds for quarantine excerpts too (raw bytes)."""
    for o in outcomes:
        if isinstance(o, Quarantined):
            yield Quarantined(o.reason, o.path, o.offset, redact_context_text(o.excerpt),
                              o.dataset, o.detail and redact_context_text(o.detail))
        else:
            yield o


def parse_bytes(
    data: bytes, path: str = "<bytes>", options: ParseOptions | None = None
) -> tuple[str | None, list[ParseOutcome]]:
    """Convenience for tests and detector cases: detect and parse an in-memory file."""
    parsers = REGISTRY.create_all(options or ParseOptions())
    dataset, outcomes = parse_stream(io.BytesIO(data), path, parsers)
    return dataset, list(outcomes)
