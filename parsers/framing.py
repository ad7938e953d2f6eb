"""Record framing shared by parsers: bounded line iteration with byte offsets.

Framing never raises on content: an over-long line is reported as such so the parser
can quarantine it, and reading stops at the stream's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Final

from parsers.base import MAX_DOCUMENT_BYTES, ParseError

OVERLONG: Final[bytes] = b"\x00keytrail:overlong\x00"
CHUNK: Final[int] = 1 << 20


def iter_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, line without newline) for every non-blank line.

    A line longer than `max_line` is yielded once as (offset, OVERLONG + first bytes) and
    the rest of it is discarded without buffering it whole.
    """
    offset = 0
    buf = b""
    buf_start = 0  # offset of buf[0] in the stream
    skipping = False  # inside an over-long line, dropping bytes up to its newline
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if skipping:
                skipping = False
            else:
                line = buf[start:nl]
                offset = buf_start + start
                if len(line) > max_line:
                    yield offset, OVERLONG + line[:512]
                elif line.strip():
                    yield offset, line.rstrip(b"\r")
            start = nl + 1
        buf_start += start
        buf = buf[start:]
        if len(buf) > max_line and not skipping:
            yield buf_start, OVERLONG + buf[:512]
            skipping = True
        if skipping:
            buf_start += len(buf)
            buf = b""
    if buf.strip() and not skipping:
        yield buf_start, buf.rstrip(b"\r")


def read_document(stream: IO[bytes], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Read a whole-file document (e.g. an S3-delivered CloudTrail object), bounded."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ParseError(f"document larger than {limit} bytes")
    return data
