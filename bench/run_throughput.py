"""End-to-end `keytrail run` throughput and peak RSS on generated mixed corpora.

Prints a table; never fails a build. Usage: python bench/run_throughput.py [N ...]
(default 1000000 5000000). Each run is a fresh process; peak RSS is the summed resident
memory of keytrail and its Beam worker processes, sampled every 0.2 s.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.corpus import write_corpus  # noqa: E402


def tree_rss_kb(root: int) -> int:
    """Summed RSS of a process and all its descendants (Linux /proc), in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(d.name))
            rss[int(d.name)] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def measure(cmd: list[str]) -> tuple[int, float, int, str]:
    """(exit code, wall seconds, peak summed RSS of the process tree in KiB, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, err = proc.communicate()
    done.set()
    th.join()
    return proc.returncode, time.perf_counter() - t0, peak, err.decode()[-2000:]


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
    from parsers import native

    print("compiled fast paths:", "loaded" if native.available() else
          "not loaded (make native; KEYTRAIL_NATIVE=0 disables them)")
    print(f"{'events':>10} {'wall s':>8} {'events/s':>10} {'orjson rec/s':>13} "
          f"{'ratio':>6} {'peak RSS MB':>12}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus"
            write_corpus(corpus, n)
            raw = orjson_rate(corpus)
            cmd = [str(REPO / ".venv/bin/keytrail"), "run", str(corpus), "--out",
                   str(Path(tmp) / "out"), "--quiet"]
            rc, dt, rss, err = measure(cmd)
            if rc != 0:
                print(f"{n:>10,} run failed: {err[-500:]}")
                continue
            summary = orjson.loads((Path(tmp) / "out" / "run_summary.json").read_bytes())
            ev = summary["totals"]["events"]
            rate = ev / float(dt)
            print(f"{ev:>10,} {float(dt):>8.1f} {rate:>10,.0f} {raw:>13,.0f} "
                  f"{rate / raw:>6.2f} {rss / 1024:>12,.0f}")


if __name__ == "__main__":
    main()
