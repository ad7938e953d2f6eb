"""The live-mode acceptance test with a real OpenSearch 2.19 node behind a TCP proxy that
the feed stops and starts at random (engine outages) while `keytrail watch` runs and is
killed with SIGKILL: at the end the engine's documents equal, by content, the documents
one `keytrail run` over the final input produces, and so does the local store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.golden_util import REPO
from tests.live_feed import HEADER, engine_differences, run_feed
from tests.test_sink_opensearch import Proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


@pytest.mark.parametrize("seed", [21])
def test_random_feed_with_kills_and_outages_equals_batch_in_opensearch(
        opensearch: Any, seed: int, tmp_path: Path) -> None:
    url = str(opensearch.url).rstrip("/")
    prefix = f"ktlive{seed}"
    setup = subprocess.run([sys.executable, "-m", "pipelines.cli", "setup", "--sink",
                            "opensearch", "--sink-url", url, "--index-prefix", prefix,
                            "--roles-out", str(tmp_path / "roles")], cwd=REPO,
                           capture_output=True, text=True, timeout=300, check=False)
    assert setup.returncode == 0, setup.stderr[-2000:]
    proxy = Proxy(url)
    proxy.start()
    try:
        sink = ["--sink", "opensearch", "--sink-url", proxy.url, "--index-prefix", prefix]
        res = run_feed(seed, tmp_path / "feed", steps=30, sink=sink,
                       outage=(proxy.stop, proxy.start))
        res.differences.update(engine_differences(
            url, prefix, tmp_path / "feed" / "batch",
            ignore_paths=bool(res.rotations or res.copytruncates)))
    finally:
        proxy.stop()
    print(f"\n{HEADER}\n{res.row()}")
    assert res.kills >= 1 and res.events > 0
    assert res.differences == {}


def test_watch_started_during_an_outage_waits_and_delivers(opensearch: Any,
                                                           tmp_path: Path) -> None:
    """The engine is down when `keytrail watch` starts and during its first cycles: the
    daemon keeps running (it used to exit 2), then delivers everything once it is back."""
    import os
    import shutil
    import time

    from tests.golden_util import SAMPLES

    url = str(opensearch.url).rstrip("/")
    prefix = "ktoutage"
    setup = subprocess.run([sys.executable, "-m", "pipelines.cli", "setup", "--sink",
                            "opensearch", "--sink-url", url, "--index-prefix", prefix,
                            "--roles-out", str(tmp_path / "roles")], cwd=REPO,
                           capture_output=True, text=True, timeout=300, check=False)
    assert setup.returncode == 0, setup.stderr[-2000:]
    src = tmp_path / "src"
    shutil.copytree(SAMPLES / "hashicorp_vault", src)
    proxy = Proxy(url)
    proxy.start()
    proxy.stop()  # the port is known; nothing answers there
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "watch", str(src), "--out",
         str(tmp_path / "out"), "--state", str(tmp_path / "state"), "--interval", "0.2",
         "--sink", "opensearch", "--sink-url", proxy.url, "--index-prefix", prefix],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        time.sleep(6)
        assert proc.poll() is None, "watch exited during the outage"
        state = tmp_path / "state" / "state.json"
        assert not state.exists(), "a cycle the engine never acknowledged was committed"
        proxy.start()
        ref = tmp_path / "batch"
        subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(src), "--out",
                        str(ref), "-q"], cwd=REPO, check=True, timeout=600)
        deadline = time.time() + 120
        diff: dict[str, str] = {"engine": "not compared yet"}
        while time.time() < deadline and diff:
            diff = engine_differences(url, prefix, ref, ignore_paths=False)
            time.sleep(1)
        assert diff == {}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        proxy.stop()
    text = err.decode()
    assert "Traceback" not in text
    assert "engine unavailable" in text and "engine back after" in text, text[-2000:]
