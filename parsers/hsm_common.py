"""Shared pieces of the HSM parsers (AWS CloudHSM, Thales Luna, Entrust nShield).

Owns: the `hsm.*` leftover fields the three parsers add beyond `schema.EXTRA_FIELDS`,
syslog-header splitting (Luna appliance format, RFC 5424, RFC 3164), JSON record
framing shared by the NDJSON / whole-document formats, and small cached helpers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Any, Final

import orjson

from parsers import schema
from parsers.framing import (
    OVERLONG,
    RECORD_LIMIT_SETTING,
    Framed,
    container_open,
    iter_container,
    iter_lines,
    read_upto,
    rejoin,
    tally_of,
)
from parsers.netaddr import clean_ip
from parsers.timeutil import MAX_YEAR, MIN_YEAR, BadTimestamp, format_ms, normalize_iso

# This family's vendor leftovers (defined with every other field in schema.EXTRA_FIELDS).
EXTRA_FIELDS: Final[dict[str, tuple[str, str]]] = {
    k: v for k, v in schema.EXTRA_FIELDS.items() if k.startswith("hsm.")
}

_MONTHS: Final[dict[str, int]] = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}


def month_number(name: str) -> int | None:
    return _MONTHS.get(name[:1].upper() + name[1:3].lower()) if len(name) >= 3 else None


@lru_cache(maxsize=65536)
def _second_prefix(seconds: int) -> str:
    try:
        t = time.gmtime(seconds)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadTimestamp(str(seconds)) from exc
    if not MIN_YEAR <= t.tm_year <= MAX_YEAR:
        raise BadTimestamp(str(seconds))
    return time.strftime("%Y-%m-%dT%H:%M:%S", t)


def epoch_ms_iso(ms: float) -> str:
    """Epoch milliseconds -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (exact, cached per second).

    Raises BadTimestamp for values outside timeutil's year range.
    """
    seconds, milli = divmod(int(ms), 1000)
    return f"{_second_prefix(seconds)}.{milli:03d}Z"


def epoch_us_iso(us: int) -> str:
    """Epoch microseconds -> UTC ms string (truncated, like timeutil.from_epoch_us)."""
    seconds, micro = divmod(us, 1_000_000)
    return f"{_second_prefix(seconds)}.{micro // 1000:03d}Z"


@lru_cache(maxsize=8192)
def hms_to_iso(year: int, month: int, day: int, hms: str) -> str:
    """(y, m, d, 'HH:MM:SS[.ffffff]') -> UTC ms string; raises BadTimestamp."""
    main, _, frac = hms.partition(".")
    parts = main.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or (frac and not frac.isdigit()):
        raise BadTimestamp(hms)
    try:
        dt = datetime(year, month, day, int(parts[0]), int(parts[1]), int(parts[2]), tzinfo=UTC)
        if frac:
            dt = dt.replace(microsecond=int(frac[:6].ljust(6, "0")))
    except (ValueError, OverflowError) as exc:  # OverflowError: a 20-digit day or year
        raise BadTimestamp(hms) from exc
    return format_ms(dt)


@lru_cache(maxsize=8192)
def us_date_to_iso(date: str, hms: str) -> str:
    """'MM/DD/YY' (or MM/DD/YYYY) + 'HH:MM:SS[.f]' -> UTC ms string; raises BadTimestamp."""
    parts = date.split("/")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise BadTimestamp(date)
    year = int(parts[2])
    if len(parts[2]) == 2:
        year += 2000
    return hms_to_iso(year, int(parts[0]), int(parts[1]), hms)


class SyslogLine:
    """A syslog line split into header and message (no regex; whitespace tokens).

    Recognised headers:
    - Luna appliance ("lunalogs") format:
      `YYYY Mon DD HH:MM:SS host  facility level  prog [pid]: msg` (runs of spaces vary);
    - RFC 5424: `[<PRI>]1 2025-01-02T03:04:05.678Z host app procid msgid [SD|-] msg`;
    - RFC 3164: `[<PRI>]Mon DD HH:MM:SS host prog[pid]: msg` (no year: timestamp None).
    """

    __slots__ = ("facility", "host", "level", "message", "program", "timestamp")

    def __init__(self) -> None:
        self.timestamp: str | None = None
        self.host: str | None = None
        self.facility: str | None = None
        self.level: str | None = None
        self.program: str | None = None
        self.message = ""


_FACILITIES: Final[frozenset[str]] = frozenset(
    [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
    ]
    + [f"local{i}" for i in range(8)]
)


def _split_program(rest: str, out: SyslogLine) -> bool:
    """'prog [pid]: msg' / 'prog[pid]: msg' / 'prog: msg' -> program + message."""
    colon = rest.find(": ")
    if colon < 0:
        if rest.endswith(":"):
            colon = len(rest) - 1
        else:
            return False
    prog = rest[:colon].strip()
    bracket = prog.find("[")
    if bracket >= 0:
        prog = prog[:bracket].strip()
    if not prog or " " in prog:
        return False
    out.program = prog
    out.message = rest[colon + 2 :] if colon + 2 <= len(rest) else ""
    return True


def parse_syslog(line: str) -> SyslogLine | None:
    """Split a syslog line; None when it does not start with a syslog header.

    Raises BadTimestamp when the header is there but its date is not a date (a spoofed
    `2025 Jan 99999999999999999999 ...`): the caller quarantines it as `bad_timestamp`.
    """
    s = line.lstrip()
    out = SyslogLine()
    if s.startswith("<"):
        end = s.find(">", 1, 5)
        if end < 0 or not s[1:end].isdigit():
            return None
        s = s[end + 1 :]
        if s.startswith("1 "):  # RFC 5424
            f = s.split(" ", 6)
            if len(f) < 6:
                return None
            out.timestamp = normalize_iso(f[1])  # BadTimestamp: a header with a bad date
            out.host, out.program = f[2], f[3]
            msg = f[6] if len(f) == 7 else ""
            if msg.startswith("["):  # structured data: skip up to the closing ']'
                close = msg.find("] ")
                msg = msg[close + 2 :] if close >= 0 else ""
            elif msg.startswith("- "):
                msg = msg[2:]
            elif msg == "-":
                msg = ""
            out.message = msg.lstrip("\ufeff")
            return out
    tok = s.split(None, 4)
    if len(tok) < 5:
        return None
    if tok[0].isdigit() and len(tok[0]) == 4:  # Luna appliance format with the year first
        month = month_number(tok[1])
        if month is None or not tok[2].isdigit():
            return None
        out.timestamp = hms_to_iso(int(tok[0]), month, int(tok[2]), tok[3])
        rest_tok = tok[4].split(None, 3)
        if len(rest_tok) < 2:
            return None
        out.host = rest_tok[0]
        if rest_tok[1] in _FACILITIES and len(rest_tok) == 4:
            out.facility, out.level = rest_tok[1], rest_tok[2]
            return out if _split_program(rest_tok[3], out) else None
        return out if _split_program(tok[4].split(None, 1)[1], out) else None
    # RFC 3164: 'Mon DD HH:MM:SS host rest' (the year is not in the header)
    if month_number(tok[0]) is None or not tok[1].isdigit() or tok[2].count(":") != 2:
        return None
    out.host = tok[3]
    return out if _split_program(tok[4], out) else None


def address_ip(address: str | None) -> str | None:
    """A valid IP from 'ip', 'ip:port' or 'ip/port' (Luna's connection form)."""
    if not address:
        return None
    slash = address.find("/")
    return clean_ip(address[:slash] if slash > 0 else address)


@lru_cache(maxsize=4096)
def snake(value: str) -> str:
    """'HSM Access' -> 'hsm_access' (cached: the vocabularies are small)."""
    out = []
    prev_us = True
    for ch in value.strip():
        if ch.isalnum():
            out.append(ch.lower())
            prev_us = False
        elif not prev_us:
            out.append("_")
            prev_us = True
    return "".join(out).rstrip("_")


def loads_exact(raw: bytes) -> Any:
    """orjson.loads, falling back to the stdlib for integers beyond 64 bits.

    orjson keeps integers exactly up to 2**64-1 but turns larger ones into floats; HSM
    object handles must never lose digits, so a record with a float where an integer
    was written is re-read with `json` (arbitrary-precision ints). Raises ValueError.
    """
    value = orjson.loads(raw)
    if isinstance(value, dict) and any(isinstance(v, float) for v in value.values()):
        exact = json.loads(raw)
        return exact if isinstance(exact, dict) else value
    return value


def first_significant_byte(head: bytes) -> int:
    """Index of the first byte that is not whitespace or a UTF-8 BOM (len(head) if none)."""
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    n = len(head)
    while i < n and head[i] in b" \t\r\n":
        i += 1
    return i


def _expand(
    value: Any, list_keys: tuple[str, ...]
) -> tuple[list[Any], dict[str, Any] | None] | None:
    """The records inside a container value (array, or object with a list under list_keys)."""
    if isinstance(value, list):
        return value, None
    if isinstance(value, dict):
        for k in list_keys:
            items = value.get(k)
            if isinstance(items, list):
                return items, value
    return None


def json_records(
    stream: IO[bytes], max_line: int, list_keys: tuple[str, ...]
) -> Iterator[tuple[int, bytes | None, Any, str | None, dict[str, Any] | None]]:
    """Frame a JSON log file as records: (offset, raw, value, error, container).

    - NDJSON (the first line is a complete JSON value): one record per non-blank line,
      offset = byte offset of the line. `value` is None and `error` says why when the
      line is not JSON ('invalid_json:...') or is over-long ('line_too_long'). A line
      that is itself a container (an array of objects, or an object with a list under one
      of `list_keys`, e.g. a compact `{"events":[...]}`) yields one record per element,
      all with the line's offset; `container` is that enclosing object.
    - otherwise a whole-file document (pretty-printed array or container object): one
      record per element, offset = element index, raw = None. A document that does not
      parse is re-read line by line (each non-blank line one record, as NDJSON), so its
      records are still accounted.
    """
    tally = tally_of(stream)
    head = read_upto(stream, 1 << 16)
    start = first_significant_byte(head)
    nl = head.find(b"\n", start)
    first_line = head[start:nl] if nl >= 0 else head[start:]
    ndjson = False
    if first_line.strip():
        try:
            orjson.loads(first_line)
            ndjson = True
        except orjson.JSONDecodeError:
            ndjson = False
    lines_from: Any = rejoin(head, stream)
    opener = container_open(tuple(k.encode() for k in list_keys))
    if not ndjson and opener.match(head):
        # A container document, streamed element by element.
        for item in iter_container(lines_from, max_line, opener, tally):
            assert isinstance(item, Framed)  # no batches asked for
            if item.problem == "record_too_long":
                yield item.idx, item.raw, None, (
                    f"record_too_long:record {item.idx} (bytes {item.start}-{item.end}) "
                    f"longer than {max_line} bytes; raise {RECORD_LIMIT_SETTING} to read it"), None
                continue
            if item.problem is not None:
                yield item.idx, item.raw, None, (
                    f"{item.problem}:bytes {item.start}-{item.end} of the container"), None
                continue
            try:
                value = orjson.loads(item.raw)
            except orjson.JSONDecodeError as exc:
                yield item.idx, item.raw, None, f"invalid_json:{exc}", None
                continue
            yield item.idx, None, value, None, None
        return
    if not ndjson:
        # One pretty-printed record (not a container): read it whole, bounded.
        data = head + read_upto(stream, max(1, (256 << 20) - len(head)))
        body = data[first_significant_byte(data) :]
        try:
            doc = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            doc = None
        if doc is not None:
            expanded = _expand(doc, list_keys)
            if expanded is None:
                tally.records += 1
                yield 0, body[:max_line], doc, None, None  # one pretty-printed record
                return
            for i, item in enumerate(expanded[0]):
                tally.records += 1
                yield i, None, item, None, expanded[1]
            return
        lines_from = rejoin(data, stream)
    for offset, line in iter_lines(lines_from, max_line):
        if line.startswith(OVERLONG):
            yield offset, line[len(OVERLONG) :], None, "line_too_long", None
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield offset, line, None, f"invalid_json:{exc}", None
            continue
        expanded = _expand(value, list_keys)
        if (
            expanded is not None
            and isinstance(value, list)
            and not all(isinstance(item, dict) for item in value)
        ):
            expanded = None  # a stray array line is one (malformed) record, not many
        if expanded is None:
            yield offset, line, value, None, None
        else:
            tally.records += len(expanded[0]) - 1  # the line's elements, not the line
            for item in expanded[0]:
                yield offset, None, item, None, expanded[1]
