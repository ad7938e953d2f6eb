"""Line framing: streamed, chunk-size independent, offsets exact, bounded line length."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parsers.framing as framing
from parsers.framing import OVERLONG, iter_lines
from parsers.timeutil import BadTimestamp, normalize_iso


def reference(data: bytes, max_line: int) -> list[tuple[int, bytes]]:
    out, off = [], 0
    for raw in data.split(b"\n"):
        if len(raw) > max_line:
            out.append((off, OVERLONG))
        elif raw.strip():
            out.append((off, raw[:-1] if raw.endswith(b"\r") else raw))
        off += len(raw) + 1
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400).map(lambda b: b.replace(b"\x01", b"\n")),
       chunk=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
       max_line=st.sampled_from([4, 10, 40, 1000]))
def test_iter_lines_matches_split_for_any_chunking(data: bytes, chunk: int,
                                                   max_line: int) -> None:
    saved = framing.CHUNK
    framing.CHUNK = chunk
    try:
        got = [(o, OVERLONG if line.startswith(OVERLONG) else line)
               for o, line in iter_lines(io.BytesIO(data), max_line)]
    finally:
        framing.CHUNK = saved
    assert got == reference(data, max_line)


def test_offsets_point_at_the_record() -> None:
    data = b'{"a":1}\r\n\n  \n{"b":2}\n{"c":3}'
    for off, line in iter_lines(io.BytesIO(data), 100):
        assert data[off:].startswith(line)


@pytest.mark.parametrize(("raw", "want"), [
    ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z"),
    ("2024-01-01T00:00:00.123456789Z", "2024-01-01T00:00:00.123Z"),
    ("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.100Z"),
    ("2024-01-01T05:00:00-05:00", "2024-01-01T10:00:00.000Z"),
    ("2024-01-01 00:00:00.000", "2024-01-01T00:00:00.000Z"),
])
def test_normalize_iso(raw: str, want: str) -> None:
    assert normalize_iso(raw) == want


@pytest.mark.parametrize("raw", ["2025-13-45T10:00:00Z", "2025-02-01T25:00:00Z", "yesterday",
                                 "2025-02-01T10:61:00.5Z"])
def test_normalize_iso_rejects_impossible_values(raw: str) -> None:
    with pytest.raises(BadTimestamp):
        normalize_iso(raw)
