"""Every sample_logs file parses to exactly its reviewed golden events and accounting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden_util import check_golden, sample_files


@pytest.mark.parametrize("sample", sample_files(),
                         ids=lambda p: p.relative_to(p.parents[1]).as_posix())
def test_sample_matches_golden(sample: Path) -> None:
    check_golden(sample)
