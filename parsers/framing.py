"""Record framing shared by parsers: streams, bounded lines, streamed JSON containers, counts.

Framing never raises on content: an over-long line or element is reported as such so the
parser can quarantine it, a container that breaks is reported as one span, and reading
stops at the stream's end. No reader here assumes that one `read(n)` returns `n` bytes:
decompressing, network and test streams return less, so every reader loops.

Framing also counts what it framed (`Tally.records`: non-blank lines, array elements,
blocks, broken spans), independently of what the parser makes of each record, so the
pipeline can check `records_in == events + skipped + quarantined` per file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, NamedTuple, cast

import orjson

from parsers.base import MAX_DOCUMENT_BYTES, ParseError, Quarantined, quarantine

OVERLONG: Final[bytes] = b"\x00keytrail:overlong\x00"
CHUNK: Final[int] = 1 << 20
# What the quarantine names when a record or document is over a limit.
RECORD_LIMIT_SETTING: Final[str] = "parse.max_line_bytes (ParseOptions.max_line_bytes)"
DOCUMENT_LIMIT_SETTING: Final[str] = "parse.max_document_bytes (ParseOptions.max_document_bytes)"


@dataclass
class Tally:
    """Records framed from one file's container (lines, elements, blocks, broken spans)."""

    records: int = 0


def tally_of(stream: Any) -> Tally:
    """The tally a stream carries (a `Source`), else a throwaway one."""
    t = getattr(stream, "tally", None)
    return t if isinstance(t, Tally) else Tally()


def read_upto(stream: Any, n: int) -> bytes:
    """Up to `n` bytes: fewer only at the end of the stream (read() may return less)."""
    first = stream.read(n)
    if not first or len(first) >= n:
        return first or b""
    parts = [first]
    got = len(first)
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class Source(io.RawIOBase):
    """Bytes already read (for detection or container sniffing), then the rest of a stream.

    The one rejoining stream: `read(n)` returns `n` bytes unless the stream ends, `pos` is
    the number of bytes handed out, and the framing tally is shared with an inner Source.
    """

    def __init__(self, head: bytes, rest: Any, tally: Tally | None = None,
                 owns: bool = False) -> None:
        self._head = head
        self._rest = rest
        self._owns = owns
        self.tally = tally if tally is not None else tally_of(rest)
        self.pos = 0

    def readable(self) -> bool:
        return True

    @property
    def stream_error(self) -> Exception | None:
        """An error the underlying stream reported as its end (e.g. corrupt gzip data)."""
        err = getattr(self._rest, "stream_error", None)
        return err if isinstance(err, Exception) else None

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._head]
            self._head = b""
            while True:
                chunk = self._rest.read(CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
            data = b"".join(parts)
        elif self._head:
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += read_upto(self._rest, size - len(data))
        else:
            data = read_upto(self._rest, size)
        self.pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        # Only an owning Source closes its stream: parsers drop rejoined views (and the
        # garbage collector closes them) while the stream is still being read.
        try:
            if self._owns:
                self._rest.close()
        finally:
            super().close()


def rejoin(head: bytes, rest: Any) -> IO[bytes]:
    """`head` (already read from `rest`) followed by the rest, sharing `rest`'s tally."""
    return cast(IO[bytes], Source(head, rest))


# ------------------------------------------------------------------ lines

# A newline followed by a blank (whitespace-only) line that ends in a newline.
_BLANK_AFTER_NL: Final = re.compile(rb"\n(?=[ \t\r\x0b\x0c]*\n)")


class LineCounter:
    """Counts the non-blank lines of a byte stream as it passes (what iter_lines yields).

    Used where compiled code frames the lines itself: `feed` every chunk, `finish` at EOF.
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self._partial = False  # the unterminated last line so far has content

    def feed(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            if not self._partial and chunk.strip():
                self._partial = True
            return
        last = chunk.rfind(b"\n")
        n = 1 if self._partial or chunk[:first].strip() else 0
        if last > first:
            middle = chunk.count(b"\n", first + 1, last + 1)  # lines between the two
            n += middle - len(_BLANK_AFTER_NL.findall(chunk, first, last + 1))
        self.tally.records += n
        self._partial = bool(chunk[last + 1 :].strip())

    def finish(self) -> None:
        if self._partial:
            self.tally.records += 1
            self._partial = False

    def reader(self, read: Any) -> Any:
        """A read(n) callable that feeds this counter (finishing at the end of the stream)."""

        def counted(n: int = -1) -> bytes:
            data: bytes = read(n)
            if data:
                self.feed(data)
            else:
                self.finish()
            return data

        return counted


def iter_lines(
    stream: IO[bytes], max_line: int, tally: Tally | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (byte offset, line without newline) for every non-blank line.

    A line longer than `max_line` is yielded once as (offset, OVERLONG + first bytes) and
    the rest of it is discarded without buffering it whole. A trailing CR is removed.
    Every yielded line is counted in `tally` (default: the stream's).
    """
    t = tally if tally is not None else tally_of(stream)
    for item in _iter_lines(stream, max_line):
        t.records += 1
        yield item


def _iter_lines(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, bytes]]:
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


# ------------------------------------------------------------------ whole documents


class DocumentTooLarge(ParseError):
    """A document that must be read whole is over `ParseOptions.max_document_bytes`."""


def read_document(stream: IO[bytes], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Read a whole-file document, bounded (looping: a read may return fewer bytes)."""
    data = read_upto(stream, limit + 1)
    if len(data) > limit:
        raise DocumentTooLarge(f"document larger than {limit} bytes; raise "
                               f"{DOCUMENT_LIMIT_SETTING} to read it")
    return data


def too_long(path: str, offset: int, raw: bytes, dataset: str, limit: int) -> Quarantined:
    """The quarantine record for a line iter_lines reported as over-long."""
    return quarantine("line_too_long", path, offset, raw[len(OVERLONG):], dataset,
                      f"line longer than {limit} bytes; raise {RECORD_LIMIT_SETTING} "
                      "to read it")


# ------------------------------------------------------------------ streamed JSON containers

_STR: Final[bytes] = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'


def _nested(levels: int) -> bytes:
    """A JSON object/array with at most `levels` nesting levels, strings skipped whole.

    Possessive quantifiers: no backtracking, a failed match costs one pass."""
    v = rb'[\[{](?:[^"\[\]{}]++|' + _STR + rb')*+[\]}]'
    for _ in range(levels - 1):
        v = rb'[\[{](?:[^"\[\]{}]++|' + _STR + rb"|" + v + rb")*+[\]}]"
    return v


_ELEMENT: Final = re.compile(_nested(12), re.S)
_SCALAR: Final = re.compile(_STR + rb"|[^,\]\s\"\[{}]++", re.S)
_STR_BODY: Final = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
_BRACKET: Final = re.compile(rb'["\[\]{}]')
_SPACE: Final = re.compile(rb"[ \t\r\n]*+(?:\xef\xbb\xbf[ \t\r\n]*+)?")
_KEYS: Final[tuple[bytes, ...]] = (b"Records", b"records", b"events")


def container_open(keys: tuple[bytes, ...] = _KEYS) -> re.Pattern[bytes]:
    """`[` or `{"<key>": [` at the start of a container (whitespace and BOM allowed);
    only `[` without keys."""
    alt = b"|".join(re.escape(k) for k in keys if k) or rb"(?!)"
    return re.compile(rb'[ \t\r\n]*+(?:\xef\xbb\xbf[ \t\r\n]*+)?(?:\[|\{[ \t\r\n]*+"('
                      + alt + rb')"[ \t\r\n]*+:[ \t\r\n]*+\[)')


_ARRAY_OPEN: Final = container_open(())
# A closing bracket followed by the next element or the end of the array: candidate cuts.
_CUT: Final = re.compile(rb"[}\]](?=[ \t\r\n]*+(?:,[ \t\r\n]*+[{\[]|\]))")
BATCH_BYTES: Final[int] = 1 << 20


class Batch:
    """Several whole elements of a streamed container, for a compiled batch parser.

    `raw` is the elements' bytes with their separating commas (wrap it in brackets to get a
    JSON array); the cut was found by bracket counting, so it is only a candidate: the
    consumer parses it strictly and sets `count` to the number of elements, or leaves it
    None and the framing re-frames the bytes exactly and yields them as `Framed` items."""

    __slots__ = ("count", "end", "idx", "key", "raw", "start")

    def __init__(self, idx: int, start: int, end: int, raw: bytes, key: bytes | None) -> None:
        self.idx, self.start, self.end, self.raw, self.key = idx, start, end, raw, key
        self.count: int | None = None


class Framed(NamedTuple):
    """One element of a streamed container, or one span that could not be framed.

    `problem` is None for a framed element (`raw` = its bytes), else a quarantine reason:
    'record_too_long' (raw = first bytes), 'truncated_record' (the stream ended inside it:
    raw = first bytes, end = end of stream) or 'invalid_json' (not a container element:
    the rest of the stream from `start`, one span)."""

    idx: int  # the element's index in the container(s)
    start: int
    end: int
    raw: bytes
    problem: str | None = None
    key: bytes | None = None  # the wrapper's record-array key, None in a bare array


class _Buf:
    """A sliding window over a stream: `data[i]` is at file offset `base + i`."""

    __slots__ = ("base", "data", "eof", "stream")

    def __init__(self, stream: Any, head: bytes = b"") -> None:
        self.stream = stream
        self.data = head
        self.base = 0
        self.eof = False

    def more(self, keep_from: int) -> int:
        """Drop data before `keep_from`, append a chunk; returns the shift (0 at EOF)."""
        chunk = b"" if self.eof else read_upto(self.stream, CHUNK)
        if not chunk:
            self.eof = True
            return -1
        self.data = self.data[keep_from:] + chunk
        self.base += keep_from
        return keep_from


def _value_end(data: bytes, p: int, depth: int, in_str: bool) -> tuple[int, int, int, bool]:
    """Exact incremental scan of one value from `p`: (end or -1, resume pos, depth, in_str).

    Strings are skipped whole (escapes included); only brackets change the depth. Returns
    end = -1 when `data` ends first; resume from the returned position with more data."""
    n = len(data)
    while p < n:
        if in_str:
            p = _STR_BODY.match(data, p).end()  # type: ignore[union-attr]
            if p >= n or data[p] == 92:  # the string (or an escape) continues in the next chunk
                return -1, p, depth, True
            p += 1
            in_str = False
            if depth == 0:
                return p, p, 0, False
            continue
        if depth == 0:  # a scalar element
            c = data[p]
            if c == 34:
                in_str = True
                p += 1
                continue
            if c not in b"[{":
                m = _SCALAR.match(data, p)
                end = m.end() if m else p + 1
                return (end, end, 0, False) if end < n else (-1, p, 0, False)
        m = _BRACKET.search(data, p)
        if m is None:
            return -1, n, depth, False
        p = m.end()
        c = data[p - 1]
        if c == 34:
            in_str = True
        elif c in b"[{":
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return p, p, 0, False
    return -1, p, depth, in_str


def iter_container(stream: Any, max_record: int, opener: re.Pattern[bytes],
                   tally: Tally | None = None,
                   batches: frozenset[bytes] = frozenset()) -> Iterator[Framed | Batch]:
    """The elements of a streamed JSON container, without reading the container whole.

    The stream starts with what `opener` matches (a top-level array, or an object whose
    first member is the record array). Several such containers may follow one another
    (concatenated or one per line); element indexes continue across them. Members after
    the record array in a wrapper object are metadata (e.g. `nextToken`), not records.
    Memory: one chunk plus the largest element (bounded by `max_record`).

    For wrapper keys in `batches`, runs of whole elements come as `Batch` items (see there);
    a consumer that sets `Batch.count` counts those elements in the tally itself.
    """
    t = tally if tally is not None else tally_of(stream)
    for item in _iter_container(stream, max_record, opener, batches):
        if type(item) is Framed:
            t.records += 1
        yield item


def _iter_container(stream: Any, max_record: int, opener: re.Pattern[bytes],
                    batches: frozenset[bytes] = frozenset()) -> Iterator[Framed | Batch]:
    buf = _Buf(stream, read_upto(stream, CHUNK))
    index = 0
    i = 0
    wrapper = False  # inside a {"key": [...]} object (vs a bare array)
    key: bytes | None = None
    exact_until = 0  # file offset up to which elements are framed exactly, not batched
    in_array = False
    while True:
        data = buf.data
        if not in_array:
            m = _SPACE.match(data, i)
            j = m.end() if m else i
            if j >= len(data):
                if buf.more(i) < 0:
                    return
                i = 0
                continue
            m = opener.match(data, j)
            if m is None or (m.end() == len(data) and not buf.eof):
                if (m is None and len(data) - j > 4096) or buf.eof:
                    yield _rest_span(buf, index, j)
                    return
                if buf.more(j) < 0:
                    continue
                i = 0
                continue
            wrapper = b"{" in data[j : m.end()]
            key = m.group(1) if wrapper else None
            in_array = True
            i = m.end()
            continue
        m = _SPACE.match(data, i)
        j = m.end() if m else i
        while j < len(data) and data[j] == 44:  # ',' (also tolerates stray commas)
            j = _SPACE.match(data, j + 1).end()  # type: ignore[union-attr]
        if j >= len(data):
            if buf.more(i) < 0:
                return  # the stream ended between elements: nothing was lost
            i = 0
            continue
        c = data[j]
        if c == 93:  # ']'
            in_array = False
            i = j + 1
            if wrapper:
                end = _close_wrapper(buf, i)
                if end < 0:
                    return
                i = end
            continue
        if c in b"}:":
            yield _rest_span(buf, index, j)._replace(key=key)
            return
        if key in batches and c in b"[{" and buf.base + j >= exact_until:
            cut = _cut(data, j, len(data) if buf.eof else len(data) - 1)
            if cut > j:
                batch = Batch(index, buf.base + j, buf.base + cut, data[j:cut], key)
                yield batch
                if batch.count is not None:
                    index += batch.count
                    i = cut
                    continue
                # Refused (an invalid element, or a bracket inside a string misled the
                # count): frame these bytes exactly, from the same start.
                exact_until = buf.base + cut
        m = _ELEMENT.match(data, j) if c in b"[{" else None
        if m is not None:
            end = m.end()
            if end - j > max_record:
                yield Framed(index, buf.base + j, buf.base + end, data[j : j + 512],
                             "record_too_long", key)
            else:
                yield Framed(index, buf.base + j, buf.base + end, data[j:end], None, key)
            index += 1
            i = end
            continue
        # Not matched in one go: deeper than the fast pattern, or continues in the next
        # chunk, or over-long. Scan exactly, reading on, keeping at most max_record bytes.
        item = _slow_element(buf, j, index, max_record)._replace(key=key)
        yield item
        index += 1
        if item.problem == "truncated_record":
            return
        i = item.end - buf.base


def load_element(item: Framed, path: str, dataset: str,
                 max_record: int) -> tuple[Any, Quarantined | None]:
    """A framed element's JSON value, or (None, the quarantine) when it is not one.

    Offsets are the element index (as for a whole document); details give the byte range.
    """
    i = item.idx
    where = f"bytes {item.start}-{item.end}"
    if item.problem == "record_too_long":
        return None, quarantine("record_too_long", path, i, item.raw, dataset,
                                f"record {i} ({where}) longer than {max_record} bytes; raise "
                                f"{RECORD_LIMIT_SETTING} to read it")
    if item.problem is not None:
        what = "the stream ends inside this record" if item.problem == "truncated_record" \
            else "not a record of the container: the rest of the file is one span"
        return None, quarantine(item.problem, path, i, item.raw, dataset, f"{where}: {what}")
    try:
        return orjson.loads(item.raw), None
    except orjson.JSONDecodeError as exc:
        reason = "truncated_record" if exc.msg.startswith("unexpected end") else "invalid_json"
        return None, quarantine(reason, path, i, item.raw, dataset, f"record {i} ({where}): {exc}")


def _cut(data: bytes, j: int, limit: int) -> int:
    """The end of the last element (from `j`, at most BATCH_BYTES on) that closes before
    `limit` by bracket count; `j` if none. Candidates are tried from the end, each with
    one counting pass from `j` (C speed), so a batch costs a few passes, not a parse."""
    stop = min(limit, j + BATCH_BYTES)
    window = max(j, stop - (64 << 10))
    ends = [m.end() for m in _CUT.finditer(data, window, stop)]
    for e in reversed(ends[-8:]):
        if (data.count(b"{", j, e) + data.count(b"[", j, e)
                == data.count(b"}", j, e) + data.count(b"]", j, e)):
            return e
    return j


def _slow_element(buf: _Buf, j: int, index: int, max_record: int) -> Framed:
    start = buf.base + j
    p, depth, in_str = j, 0, False
    head = b""
    while True:
        end, p, depth, in_str = _value_end(buf.data, p, depth, in_str)
        if end >= 0:
            size = buf.base + end - start
            if head or size > max_record:
                return Framed(index, start, buf.base + end, head or buf.data[j : j + 512],
                              "record_too_long")
            return Framed(index, start, buf.base + end, buf.data[j:end])
        if not head and buf.base + len(buf.data) - start > max_record:
            head = buf.data[j : j + 512]  # over-long: keep an excerpt, drop the rest
        keep = p if head else j
        if buf.more(keep) < 0:
            raw = head or buf.data[j : j + 512]
            return Framed(index, start, buf.base + len(buf.data), raw, "truncated_record")
        if head:
            p, j = 0, 0
        else:
            p, j = p - j, 0


def _close_wrapper(buf: _Buf, i: int) -> int:
    """Skip the members after the record array up to the wrapper's closing brace: the
    position after it, or -1 at the end of the stream."""
    p, depth, in_str = i, 1, False
    while True:
        end, p, depth, in_str = _value_end(buf.data, p, depth, in_str)
        if end >= 0:
            return end
        shift = buf.more(p)
        if shift < 0:
            return -1
        p = 0


def _rest_span(buf: _Buf, index: int, j: int) -> Framed:
    """Everything from `j` to the end of the stream as one span (read, not kept)."""
    start = buf.base + j
    raw = buf.data[j : j + 512]
    end = buf.base + len(buf.data)
    while True:
        chunk = read_upto(buf.stream, CHUNK)
        if not chunk:
            break
        end += len(chunk)
    buf.eof = True
    return Framed(index, start, end, raw, "invalid_json")
