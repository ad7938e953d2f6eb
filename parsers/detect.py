"""Format detection per file, by content, and the guarded parse of one file.

Every registered parser scores the head bytes (`SNIFF_BYTES`). Detection only needs the
container and record shape, which the first record shows: parsers recognise a family by
its record shape (e.g. any Azure resource-log record), never by finding an in-scope
record in the head, and decide scope per record while parsing. So records of other
services before the key records (subscription-wide exports, organization trails) never
hide the file from its parser.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Final, cast

from parsers.base import REGISTRY, LogParser, ParseOptions, ParseOutcome, Quarantined, quarantine
from parsers.framing import Source, Tally, read_upto
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


def open_detected(
    stream: IO[bytes], parsers: list[LogParser] | None = None, tally: Tally | None = None
) -> tuple[LogParser | None, Source]:
    """Sniff `stream` and return the chosen parser and a stream positioned at byte 0."""
    head = read_upto(stream, SNIFF_BYTES)
    return detect(head, parsers), Source(head, stream, tally or Tally())


def parse_stream(
    stream: IO[bytes], path: str, parsers: list[LogParser] | None = None,
    tally: Tally | None = None,
) -> tuple[str | None, Iterator[ParseOutcome]]:
    """Detect the format of one file and parse it: (dataset or None, outcomes).

    `tally.records` counts the records framed from the container (see parsers/framing),
    for the caller to check against the outcomes. A file no parser recognises is one
    quarantined record ('unrecognized_format'). A stream that fails part-way (a network
    error, corrupt compressed data) keeps every record read before the failure and
    reports the unread rest as one quarantined span ('read_error') with its byte offset.
    """
    parser, src = open_detected(stream, parsers, tally)
    if parser is None:
        head = src.read(512)
        src.tally.records += 1
        return None, iter([quarantine("unrecognized_format", path, 0, head)])
    outcomes = _guarded(parser, src, path)
    if parser.options.redact_encryption_context:
        outcomes = redact_quarantine_contexts(outcomes)
    return parser.dataset, outcomes


def _guarded(parser: LogParser, src: Source, path: str) -> Iterator[ParseOutcome]:
    try:
        yield from parser.parse(cast(IO[bytes], src), path)
    except Exception as exc:  # a read failure (or a parser bug): the rest is one span
        src.tally.records += 1
        yield quarantine("read_error", path, src.pos, b"", parser.dataset,
                         f"{type(exc).__name__}: {str(exc)[:300]}; the stream failed after "
                         f"{src.pos} bytes: bytes {src.pos}.. of the (decompressed) file "
                         "unread")
        return
    err = src.stream_error
    if err is not None:
        src.tally.records += 1
        yield quarantine("read_error", path, src.pos, b"", parser.dataset,
                         f"{err}; every record before it was read, the rest is unreadable")


def redact_quarantine_contexts(outcomes: Iterator[ParseOutcome]) -> Iterator[ParseOutcome]:
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
