"""The acceptance test of live mode: random feeds against a real `keytrail watch` process
(random chunking, partial lines, split pairs and blocks, rotations, copytruncate, kill -9
at random instants) end with a local store equal by content to one `keytrail run` over
the final input. Short here (CI); `make soak` runs the long version (tests/live_feed.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_feed import HEADER, run_feed

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("seed", [11, 12])
def test_random_feed_with_kills_equals_batch(seed: int, tmp_path: Path) -> None:
    res = run_feed(seed, tmp_path / "feed", steps=35)
    print(f"\n{HEADER}\n{res.row()}")
    assert res.kills >= 2 and res.events > 0
    assert res.differences == {}
