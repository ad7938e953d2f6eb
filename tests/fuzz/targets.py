"""Fuzz targets for every parser entry point (issue 15, "fuzzing as a habit").

Each target takes arbitrary bytes and raises AssertionError (or any exception) on a
finding: a parser that raises instead of quarantining, a native/Python difference, or a
framing result that does not match the bytes. Drivers: tests/fuzz/run_atheris.py
(coverage-guided, `make fuzz` and the CI budget in tests/test_fuzz.py) and hypothesis
where atheris is not installed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

from parsers import azure_keyvault, cloudtrail, framing, native, vault
from parsers.base import REGISTRY, ParseOptions, Quarantined, Skipped, stable_id
from parsers.detect import parse_stream
from parsers.netaddr import clean_ip
from parsers.schema import KeyEvent
from parsers.timeutil import BadTimestamp, normalize_iso

# Module attributes holding the compiled fast paths; None means "Python parser".
_NATIVE_HOOKS: tuple[tuple[Any, str], ...] = (
    (cloudtrail, "_NATIVE_LINES"), (cloudtrail, "_NATIVE_DOC"),
    (azure_keyvault, "_NATIVE_LINES"), (azure_keyvault, "_NATIVE_DOC"),
    (vault, "_NATIVE_STREAM"),
)
PATH = "fuzz/input.log"


@contextlib.contextmanager
def python_only() -> Iterator[None]:
    """Run the pure-Python parsers in this process (what KEYTRAIL_NATIVE=0 does at import)."""
    saved = [(m, a, getattr(m, a, None)) for m, a in _NATIVE_HOOKS]
    try:
        for m, a, _ in saved:
            setattr(m, a, None)
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def outcome_key(o: Any) -> Any:
    if isinstance(o, KeyEvent):
        return ("event", o.to_flat())
    if isinstance(o, Quarantined):
        return ("quarantined", o.to_dict())
    if isinstance(o, Skipped):
        return ("skipped", o.reason, o.offset)
    raise AssertionError(f"parser yielded {type(o).__name__}, not an outcome")


def _parse_all(fn: Callable[[], tuple[str | None, Iterator[Any]]]) -> tuple[Any, ...]:
    dataset, outcomes = fn()
    return dataset, [outcome_key(o) for o in outcomes]


def _differential(fn: Callable[[], tuple[str | None, Iterator[Any]]]) -> None:
    got = _parse_all(fn)
    if native.NATIVE is None:
        return
    with python_only():
        ref = _parse_all(fn)
    assert got == ref, f"native and Python parsers differ:\n native={got!r}\n python={ref!r}"


def detect_and_parse(data: bytes) -> None:
    """parsers.detect (format sniffing) + the chosen parser, native vs Python."""
    parsers = REGISTRY.create_all(ParseOptions())
    _differential(lambda: parse_stream(io.BytesIO(data), PATH, parsers))


def each_parser(data: bytes) -> None:
    """Every registered parser on the bytes, whatever sniffing says, native vs Python."""
    if not data:
        return
    parsers = REGISTRY.create_all(ParseOptions())
    p = parsers[data[0] % len(parsers)]
    body = data[1:]
    _differential(lambda: (p.dataset, p.parse(io.BytesIO(body), PATH)))


def lines(data: bytes) -> None:
    """parsers.framing.iter_lines: offsets point at the bytes; every non-blank line once."""
    max_line = 64
    saved = framing.CHUNK
    framing.CHUNK = 1 + (data[0] % 17 if data else 0)  # many chunk boundaries on small input
    try:
        got = list(framing.iter_lines(io.BytesIO(data), max_line))
    finally:
        framing.CHUNK = saved
    norm = []
    for off, line in got:
        if line.startswith(framing.OVERLONG):
            # The excerpt is the line's first bytes (how many depends on chunking).
            ex = line[len(framing.OVERLONG):]
            assert data[off:].startswith(ex) and len(ex) > max_line, (off, ex)
            norm.append((off, framing.OVERLONG))
        else:
            norm.append((off, line))
    got = norm
    want = []
    off = 0
    for raw in data.split(b"\n"):
        if len(raw) > max_line:
            want.append((off, framing.OVERLONG))
        elif raw.strip():
            want.append((off, raw[:-1] if raw.endswith(b"\r") else raw))
        off += len(raw) + 1
    assert got == want, f"framing differs:\n got={got!r}\nwant={want!r}"


def native_helpers(data: bytes) -> None:
    """The compiled helpers (stable_id, normalize_iso, clean_ip) agree with Python or defer."""
    n = native.NATIVE
    if n is None:
        return
    text = data.decode("utf-8", "replace")
    parts = text.split("\x1f")
    assert n.stable_id(parts) == stable_id(*parts)
    iso = n.normalize_iso(text)
    if iso is not None:
        try:
            assert iso == normalize_iso(text), text
        except BadTimestamp:
            raise AssertionError(f"native accepted {text!r}, Python rejects it") from None
    handled, ip = n.clean_ip(text)
    if handled:
        assert ip == clean_ip(text), text


TARGETS: dict[str, Callable[[bytes], None]] = {
    "detect_and_parse": detect_and_parse,
    "each_parser": each_parser,
    "lines": lines,
    "native_helpers": native_helpers,
}
