"""Detector time buckets: the fast string path equals epoch arithmetic for every width."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import bucket_start, suppression_start
from parsers.timeutil import from_epoch_ms, to_epoch_ms


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000_000),
       st.sampled_from([1, 7, 60, 300, 3600, 86400, 7 * 86400]))
def test_bucket_start_is_the_floor_of_the_timestamp(ms: int, seconds: int) -> None:
    ts = from_epoch_ms(ms)
    t = to_epoch_ms(ts)
    assert bucket_start(ts, seconds) == from_epoch_ms(t - t % (seconds * 1000))


def test_suppression_windows() -> None:
    assert suppression_start("2026-03-04T13:14:15.678Z", "1d") == "2026-03-04T00:00:00.000Z"
    assert suppression_start("2026-03-04T13:14:15.678Z", "1h") == "2026-03-04T13:00:00.000Z"
