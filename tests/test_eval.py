"""Detection quality through the real pipeline on generated, labelled multi-provider logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.evaluate import run_eval


@pytest.mark.slow
def test_eval_meets_targets_on_an_unseen_seed(tmp_path: Path) -> None:
    ok, table = run_eval(None, str(tmp_path), seeds=[11], days=30, scale=0.3)
    assert ok, table
    assert "TOTAL alerts" in table
