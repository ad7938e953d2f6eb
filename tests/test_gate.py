"""Gated window detectors (counts while streaming, buckets rebuilt for hot spans) give the
same alerts as full buckets everywhere, and keep no per-event state for those detectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.config import KeytrailConfig
from pipelines.detection import load_detection
from pipelines.finalize import finalize_state
from pipelines.generate import generate
from pipelines.process import EVENTS_DIR, FileProcessor
from pipelines.sources import expand_inputs
from pipelines.state import RunState, dump_state, load_state


def _run(corpus: Path, out: Path, gate: bool) -> tuple[RunState, list[dict[str, Any]]]:
    cfg = KeytrailConfig()
    detection, inventory_dets = load_detection(cfg)
    assert detection is not None
    fp = FileProcessor(str(out), cfg.parse, cfg.graph_window, detection, gate_windows=gate)
    st = RunState()
    for f in expand_inputs([str(corpus)]):
        st.absorb(fp.process(f))
    _, (_, _, _, _, alerts) = finalize_state(st, cfg, detection, inventory_dets, [str(corpus)],
                                             out / EVENTS_DIR)
    return st, alerts


@pytest.fixture(scope="module")
def attack_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("gen")
    generate(str(d), seed=3, days=20, scale=0.3)
    return d


def test_gated_alerts_equal_full_buckets(attack_corpus: Path, tmp_path: Path) -> None:
    full_state, full = _run(attack_corpus, tmp_path / "full", gate=False)
    gated_state, gated = _run(attack_corpus, tmp_path / "gated", gate=True)
    assert gated == full
    detection, _ = load_detection(KeytrailConfig())
    assert detection is not None
    gated_ids = set(detection.gates)
    # The corpus has bursts for the gated detectors, so the comparison means something.
    fired = {a["rule.id"] for a in gated} & gated_ids
    assert {"akv_burst_retrieval", "vault_burst_reads", "kms_denied_burst"} <= fired, fired
    # Streaming kept no buckets for gated detectors, only per-day count arrays.
    assert not any(k[0] in gated_ids for k in gated_state.buckets)
    assert any(k[0] in gated_ids for k in full_state.buckets)
    assert gated_state.gated
    per_day = {(k[0], k[1], k[2]) for k in gated_state.gated}
    assert len(per_day) == len(gated_state.gated)


def test_gated_counts_survive_the_state_file(attack_corpus: Path, tmp_path: Path) -> None:
    st, _ = _run(attack_corpus, tmp_path / "g", gate=True)
    back = load_state(dump_state(st))
    assert back.gated == st.gated


def test_stale_event_store_is_reported_not_fatal(attack_corpus: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "g"
    cfg = KeytrailConfig()
    detection, inventory_dets = load_detection(cfg)
    assert detection is not None
    fp = FileProcessor(str(out), cfg.parse, cfg.graph_window, detection, gate_windows=True)
    st = RunState()
    for f in expand_inputs([str(attack_corpus)]):
        st.absorb(fp.process(f))
    for shard in (out / EVENTS_DIR).glob("*.parquet"):
        shard.unlink()
    with caplog.at_level("WARNING"):
        _, (_, _, _, _, alerts) = finalize_state(st, cfg, detection, inventory_dets, [],
                                                 out / EVENTS_DIR)
    assert "window gate" in caplog.text
    assert not {a["rule.id"] for a in alerts} & set(detection.gates)


def test_sparse_and_dense_counts_merge_to_the_same_series() -> None:
    from array import array

    from pipelines.process import count_items, dense_counts, merge_gated

    k = ("d", "e", "2026-01-01")
    a = {k: {3: 2, 10: 1}}
    b = {k: dense_counts({10: 4, 1439: 1}, 1440)}
    c = {k: {3: 1}}
    for order in ((a, b, c), (c, b, a), (b, a, c)):
        acc: dict = {}
        for part in order:
            merge_gated(acc, {kk: (dict(v) if isinstance(v, dict) else array("I", v))
                              for kk, v in part.items()})
        assert count_items(acc[k]) == [(3, 3), (10, 5), (1439, 1)]
