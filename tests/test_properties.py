"""Property tests across every registered parser and format detection.

Arbitrary bytes and arbitrary JSON never raise anything but the project's ParseError, and
every file's outcomes account for its records.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.base import REGISTRY, ParseError, ParseOptions, Quarantined, Skipped
from parsers.detect import detect, parse_bytes
from parsers.schema import OPERATION_CLASS, KeyEvent

PARSERS = REGISTRY.create_all(ParseOptions())
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25,
)
# Plausible keys make the generator reach deeper into the parsers' field handling.
VENDOR_KEYS = ("Records", "records", "eventTime", "eventName", "eventSource", "time", "type",
               "request", "response", "auth", "operationName", "properties", "identity",
               "resourceId", "userIdentity", "requestParameters", "category", "message",
               "logEvents")
vendorish = st.fixed_dictionaries({}, optional=dict.fromkeys(VENDOR_KEYS, json_values))


def _check(outcomes: list[Any]) -> None:
    for o in outcomes:
        assert isinstance(o, KeyEvent | Skipped | Quarantined)
        if isinstance(o, KeyEvent):
            assert o.operation in OPERATION_CLASS
            assert o.outcome in ("success", "failure", "unknown")
            assert len(o.timestamp) == 24 and o.timestamp.endswith("Z")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        _, outcomes = parse_bytes(data, "fuzz.bin")
    except ParseError:
        return
    _check(outcomes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(vendorish | json_values, min_size=1, max_size=4), st.booleans())
def test_arbitrary_json_never_crashes_any_parser(values: list[Any], as_lines: bool) -> None:
    data = (b"\n".join(orjson.dumps(v) for v in values) if as_lines
            else orjson.dumps(values[0] if len(values) == 1 else {"Records": values}))
    for parser in PARSERS:
        try:
            parser.sniff(data)
            outcomes = list(parser.parse(io.BytesIO(data), "fuzz.json"))
        except ParseError:
            continue
        _check(outcomes)
    detect(data, PARSERS)
