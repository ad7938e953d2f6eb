"""Delivery rate to one local OpenSearch 2.19 node: keytrail's sink vs opensearch-py's
`helpers.streaming_bulk` and `helpers.parallel_bulk`, with the same documents.

Prints a table; never fails a build. Usage: python bench/delivery_rate.py [EVENTS]
(default 100000). Starts its own node (tests/servers, needs `make servers`) unless
KEYTRAIL_BENCH_OPENSEARCH_URL points at one. Each contender starts from empty indices
(templates installed by `keytrail setup`); documents are the store's bulk actions, built
once, outside the timed part.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.corpus import write_corpus  # noqa: E402


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    from opensearchpy import OpenSearch
    from opensearchpy.helpers import parallel_bulk, streaming_bulk

    from pipelines import sinks
    from pipelines.run import run_batch
    from pipelines.sinks.documents import Action, store_actions
    from pipelines.sinks.settings import SinkSettings

    server = None
    url = os.environ.get("KEYTRAIL_BENCH_OPENSEARCH_URL")
    if not url:
        from tests.servers.opensearch import OpenSearchServer

        server = OpenSearchServer(Path(tempfile.mkdtemp(prefix="kt-bench-os-")), heap="1g")
        server.start()
        url = server.url
    try:
        tmp = Path(tempfile.mkdtemp(prefix="kt-bench-deliver-"))
        write_corpus(tmp / "in", n)
        run_batch([str(tmp / "in")], str(tmp / "out"))
        prefix = "ktbench"
        setup = subprocess.run([sys.executable, "-m", "pipelines.cli", "setup", "--sink",
                                "opensearch", "--sink-url", url, "--index-prefix", prefix,
                                "--roles-out", str(tmp / "roles")], cwd=REPO,
                               capture_output=True, text=True, check=False)
        if setup.returncode:
            print(setup.stderr)
            return 0
        actions: list[Action] = list(store_actions(tmp / "out", prefix))
        client = OpenSearch(url, timeout=120)

        def wipe() -> None:
            client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)

        def helper_actions() -> Iterator[dict[str, Any]]:
            for a in actions:
                if a.op == "index":
                    yield {"_op_type": "index", "_index": a.index, "_id": a.id,
                           "_source": a.source}
                else:
                    yield {"_op_type": a.op, "_index": a.index, "_id": a.id, **a.body()}

        def keytrail(**kw: Any) -> Callable[[], None]:
            def run() -> None:
                sink = sinks.make_sink(SinkSettings(kind="opensearch", url=url, prefix=prefix),
                                       **kw)
                try:
                    report = sink.deliver(iter(actions), tmp / "dlq.ndjson")
                finally:
                    sink.close()
                assert report.sent == len(actions) and not report.unavailable
            return run

        def streaming() -> None:
            for ok, _ in streaming_bulk(client, helper_actions(), chunk_size=500,
                                        max_chunk_bytes=5 << 20, raise_on_error=True):
                assert ok

        def parallel() -> None:
            for ok, _ in parallel_bulk(client, helper_actions(), thread_count=4,
                                       chunk_size=500, max_chunk_bytes=5 << 20):
                assert ok

        runs: list[tuple[str, Callable[[], None]]] = [
            ("opensearch-py streaming_bulk (500 docs)", streaming),
            ("opensearch-py parallel_bulk (4 threads, 500 docs)", parallel),
            ("keytrail SearchSink.deliver (default)", keytrail()),
            *[(f"keytrail SearchSink.deliver ({b} docs)", keytrail(batch_docs=b))
              for b in (int(x) for x in os.environ.get("KEYTRAIL_BENCH_BATCHES", "").split(",")
                        if x)],
        ]
        # Rounds interleave the contenders (a shared machine's load drifts); the median
        # time of each is reported.
        rounds = int(os.environ.get("KEYTRAIL_BENCH_ROUNDS", "3"))
        times: dict[str, list[float]] = {name: [] for name, _ in runs}
        counts: dict[str, int] = {}
        for _ in range(rounds):
            for name, fn in runs:
                wipe()
                t0 = time.perf_counter()
                fn()
                client.indices.refresh(index=f"{prefix}-*")
                times[name].append(time.perf_counter() - t0)
                counts[name] = client.count(index=f"{prefix}-*")["count"]
        rows = []
        for name, _ in runs:
            dt = sorted(times[name])[len(times[name]) // 2]
            rows.append((name, len(actions), dt, len(actions) / dt, counts[name]))
        best = max(r[3] for r in rows[:2])
        print(f"delivery of {len(actions):,} documents ({n:,} events) to OpenSearch at {url}")
        print(f"{'contender (median of rounds)':<50} {'docs':>9} {'seconds':>8} {'docs/s':>9} "
          f"{'vs best':>8} "
              f"{'in index':>9}")
        for name, docs, dt, rate, count in rows:
            print(f"{name:<50} {docs:>9,} {dt:>8.1f} {rate:>9,.0f} {rate / best:>7.2f}x "
                  f"{count:>9,}")
        client.close()
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
