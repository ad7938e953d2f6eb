"""The compiled fast paths load, and their shared pieces agree with the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers import native
from parsers.base import stable_id
from parsers.netaddr import clean_ip
from parsers.schema import new_event
from parsers.timeutil import BadTimestamp, normalize_iso
from tests.native_util import require_native

require_native()

N = native.NATIVE


@given(st.lists(st.text(), max_size=5))
def test_stable_id_matches_python(parts: list[str]) -> None:
    try:
        [p.encode() for p in parts]
    except UnicodeEncodeError:
        return  # lone surrogates cannot cross into Rust strings; Python path handles them
    assert N.stable_id(parts) == stable_id(*parts)


@given(st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{0,10})?Z?", fullmatch=True)
       | st.text(max_size=40))
def test_normalize_iso_agrees_or_defers(value: str) -> None:
    got = N.normalize_iso(value)
    if got is None:
        return  # deferred to Python
    try:
        want = normalize_iso(value)
    except BadTimestamp:
        pytest.fail(f"native accepted {value!r} that Python rejects")
    assert got == want


@given(st.from_regex(r"\d{1,4}\.\d{1,4}\.\d{1,4}\.\d{1,4}(:\d{1,5})?", fullmatch=True)
       | st.text(max_size=30) | st.ip_addresses().map(str))
def test_clean_ip_agrees_or_defers(value: str) -> None:
    handled, got = N.clean_ip(value)
    if handled:
        assert got == clean_ip(value)


def test_event_built_natively_equals_new_event() -> None:
    ev = N._selftest_event("a/file.json", 7)
    ref = new_event(timestamp="2024-01-01T00:00:00.000Z", event_id=stable_id("selftest"),
                    dataset="aws.cloudtrail", provider="aws", action="Decrypt",
                    outcome="success", operation="decrypt", log_file_path="a/file.json",
                    log_offset=7, key_name="k1")
    assert ev == ref
    assert ev.__dict__ == ref.__dict__
    assert ev.category is not ref.category  # fresh lists, not shared with the schema tables
