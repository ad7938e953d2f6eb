"""Record framing shared by parsers: bounded line iteration with byte offsets.

Framing never raises on content: an over-long line is reported as such so the parser
can quarantine it, and reading stops at the stream's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Final

from parsers.base import MAX_DOCUMENT_BYTES, ParseError, Quarantined, quarantine

OVERLONG: Final[bytes] = b"\x00keytrail:overlong\x00"
CHUNK: Final[int] = 1 << 20


def iter_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, line without newline) for every non-blank line.

    A line longer than `max_line` is yielded once as (offset, OVERLONG + first bytes) and
    the rest of it is discarded without buffering it whole. A trailing CR is removed.
    """
    carry = b""  # incomplete last line of the previous chunk
    carry_start = 0  # its offset
    pos = 0  # offset of the next chunk's first byte
    skipping = False  # inside an over-long line, dropping bytes up to its newline
    read = stream.read
    while True:
        chunk = read(CHUNK)
        if not chunk:
            break
        chunk_start = pos
        pos += len(chunk)
        nl = chunk.find(b"\n")
        if nl < 0:
            if skipping:
                continue
            carry += chunk
            if len(carry) > max_line:
                yield carry_start, OVERLONG + carry[:512]
                skipping = True
                carry = b""
            continue
        # Complete the carried line with this chunk's first line.
        first = chunk[:nl]
        if skipping:
            skipping = False
        else:
            line = carry + first
            if len(line) > max_line:
                yield carry_start, OVERLONG + line[:512]
            elif line.strip():
                yield carry_start, line[:-1] if line[-1:] == b"\r" else line
        off = chunk_start + nl + 1
        lines = chunk[nl + 1 :].split(b"\n")
        last = lines.pop()
        for line in lines:
            n = len(line)
            if n > max_line:
                yield off, OVERLONG + line[:512]
            elif n and (line[0] > 32 or line.strip()):
                yield off, line[:-1] if line[-1] == 13 else line
            off += n + 1
        carry = last
        carry_start = off
        if len(carry) > max_line:
            yield carry_start, OVERLONG + carry[:512]
            skipping = True
            carry = b""
    if carry.strip() and not skipping:
        yield carry_start, carry[:-1] if carry[-1:] == b"\r" else carry


def read_document(stream: IO[bytes], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Read a whole-file document (e.g. an S3-delivered CloudTrail object), bounded."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ParseError(f"document larger than {limit} bytes")
    return data


def too_long(path: str, offset: int, raw: bytes, dataset: str, limit: int) -> Quarantined:
    """The quarantine record for a line iter_lines reported as over-long."""
    return quarantine("line_too_long", path, offset, raw[len(OVERLONG):], dataset,
                      f"line longer than {limit} bytes (parse.max_line_bytes)")
