"""End-to-end `keytrail run` throughput and peak RSS on generated mixed corpora.

Prints a table; never fails a build. Usage: python bench/run_throughput.py [N ...]
(default 1000000 5000000). Each run is a fresh process; peak RSS is its ru_maxrss.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.corpus import write_corpus  # noqa: E402

MEASURE = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "dt = time.perf_counter() - t\n"
    "print(r.returncode, dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.stderr.write(r.stderr[-2000:] if r.returncode else '')\n"
)


def orjson_rate(corpus: Path) -> float:
    """orjson.loads rate in events/s over the corpus (a Vault pair counts as one event)."""
    n = 0
    t = 0.0
    for p in sorted(corpus.iterdir()):
        data = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        if p.name.startswith("hsm"):
            continue
        t0 = time.perf_counter()
        if data.startswith(b'{"Records"'):
            n += len(orjson.loads(data)["Records"])
        else:
            lines = data.splitlines()
            for line in lines:
                orjson.loads(line)
            n += len(lines) // 2 if p.name.startswith("vault") else len(lines)
        t += time.perf_counter() - t0
    return n / t


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1_000_000, 5_000_000]
    print(f"{'events':>10} {'wall s':>8} {'events/s':>10} {'orjson rec/s':>13} "
          f"{'ratio':>6} {'peak RSS MB':>12}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            write_corpus(corpus, n)
            raw = orjson_rate(corpus)
            cmd = [sys.executable, "-c", MEASURE, str(REPO / ".venv/bin/keytrail"), "run",
                   str(corpus), "--out", str(Path(tmp) / "out"), "--quiet"]
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
            rc, dt, rss = r.stdout.split()
            if rc != "0":
                print(f"{n:>10,} run failed: {r.stderr[-500:]}")
                continue
            summary = orjson.loads((Path(tmp) / "out" / "run_summary.json").read_bytes())
            ev = summary["totals"]["events"]
            rate = ev / float(dt)
            print(f"{ev:>10,} {float(dt):>8.1f} {rate:>10,.0f} {raw:>13,.0f} "
                  f"{rate / raw:>6.2f} {int(rss) / 1024:>12,.0f}")


if __name__ == "__main__":
    main()
