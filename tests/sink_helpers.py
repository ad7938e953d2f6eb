"""Shared helpers of the sink tests: one real local store per session, built by the real
pipeline from sample_logs/ (or the shared real logs when sample_logs/ is empty)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest

from pipelines.run import run_batch
from tests.golden_util import REAL_LOGS, SAMPLES


def _inputs() -> list[str]:
    if any(SAMPLES.rglob("*.*")):
        return [str(SAMPLES)]
    if REAL_LOGS.is_dir() and any(REAL_LOGS.rglob("*.*")):
        return [str(REAL_LOGS)]
    pytest.skip("no sample_logs/ and no shared real logs to run the pipeline on")


@functools.cache
def local_store() -> Path:
    """Output directory of one `keytrail run` on the sample logs (cached per session)."""
    out = Path(tempfile.mkdtemp(prefix="kt-sink-store-")) / "out"
    summary = run_batch(_inputs(), str(out), None)
    assert summary["totals"]["events"] > 0, "the sample run produced no events"
    return out
