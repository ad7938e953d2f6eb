"""Timestamp normalization: every parser emits UTC ISO 8601 with millisecond precision.

Every conversion here is total: a value that is not a timestamp, or one outside
[MIN_YEAR, MAX_YEAR], raises BadTimestamp (never ValueError/OverflowError/OSError), and
parsers quarantine the record as `bad_timestamp`. The bounds keep every later date
computation (cryptoperiods, windows, expiry dates) far from datetime's year-9999 limit, so
a spoofed `9999-12-31T23:59:59-01:00` cannot stop a file or a run.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

_RFC3339: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(Z|z|[+-]\d{2}:?\d{2}|UTC)?$"
)


MIN_YEAR: Final = 1970  # audit logs postdate the Unix epoch
MAX_YEAR: Final = 8999  # leaves ~1000 years of headroom for date arithmetic


class BadTimestamp(ValueError):
    """A timestamp keytrail cannot interpret or that lies outside [MIN_YEAR, MAX_YEAR]."""


def format_ms(dt: datetime) -> str:
    """datetime -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (UTC); BadTimestamp outside the year range."""
    if dt.tzinfo is not None:
        try:
            dt = dt.astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise BadTimestamp(str(dt)) from exc
    if not MIN_YEAR <= dt.year <= MAX_YEAR:
        raise BadTimestamp(str(dt))
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def normalize_iso(value: str) -> str:
    """RFC 3339 / ISO 8601 with 0-9 fractional digits and any offset -> UTC ms string.

    Naive timestamps are taken as UTC (CloudTrail and Vault always log UTC).
    """
    # Fast path: '2024-01-01T00:00:00Z' / '...00.123456789Z' already in UTC.
    n = len(value)
    if (n >= 20 and value[-1] == "Z" and value[10] == "T" and value[4] == "-"
            and "1970" <= value[:4] <= "8999"
            and "01" <= value[5:7] <= "12" and "01" <= value[8:10] <= "31"
            and value[11:13] <= "23" and value[14:16] <= "59" and value[17:19] <= "59"
            and value[:4].isdigit() and value[11:13].isdigit() and value[14:16].isdigit()
            and value[17:19].isdigit()):
        if n == 20:
            return value[:19] + ".000Z"
        if value[19] == ".":
            frac = value[20:-1]
            if frac.isdigit():
                return value[:19] + "." + (frac + "00")[:3] + "Z"
    m = _RFC3339.match(value.strip())
    if not m:
        raise BadTimestamp(value)
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
        micros = int((frac or "0")[:6].ljust(6, "0"))
        dt = dt.replace(microsecond=micros)
        if tz and tz not in ("Z", "z", "UTC"):
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            if digits[:2] > "23" or digits[2:4] > "59":
                raise BadTimestamp(value)
            offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))
            dt = dt - sign * offset
    except (ValueError, OverflowError) as exc:  # e.g. year 9999 shifted past datetime.max
        raise BadTimestamp(value) from exc
    return format_ms(dt)


def from_epoch_ms(ms: int | float) -> str:
    try:
        return format_ms(datetime.fromtimestamp(ms / 1000.0, tz=UTC))
    except (ValueError, OverflowError, OSError) as exc:
        raise BadTimestamp(str(ms)) from exc


def from_epoch_us(us: int) -> str:
    try:
        return format_ms(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us))
    except (ValueError, OverflowError) as exc:
        raise BadTimestamp(str(us)) from exc


def to_epoch_ms(iso_ms: str) -> int:
    """Inverse of format_ms for keytrail's own timestamps."""
    dt = datetime.strptime(iso_ms, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)
