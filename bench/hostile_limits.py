"""Peak memory and time of `keytrail parse` on hostile containers, native and Python.

Prints a table; never fails a build. Usage: python bench/hostile_limits.py [--big]
Each case is one hostile record between two valid ones (except the document case), run
in a fresh process per parser path; peak RSS is the child's ru_maxrss. `--big` adds the
300 MB single-line document (needs ~1 GB of disk in the temp dir and ~600 MB of RAM).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
DEPTH = 100_000


def first_line(rel: str) -> bytes:
    return (SAMPLES / rel).read_bytes().split(b"\n", 1)[0]


def write_cases(big: bool, tmp: Path) -> list[tuple[str, Path]]:
    """Write each case to a file, one at a time: the parent must not hold them in memory
    when it starts the measured children (a forked child starts at the parent's RSS)."""
    ct = first_line("aws_cloudtrail/eventbridge-kms.ndjson")
    vault = first_line("hashicorp_vault/vault-audit-file.log")
    kv = first_line("azure_keyvault/pt1h-auditevent.ndjson")
    nest = b"[" * DEPTH + b"]" * DEPTH
    specs: list[tuple[str, bytes, list[bytes], bytes]] = [
        ("cloudtrail 100k-deep record", ct, [ct[:-1], b',"deep":', nest, b"}"], ct),
        ("vault 100k-deep record", vault, [vault[:-1], b',"deep":', nest, b"}"], vault),
        ("keyvault 100k-deep record", kv, [kv[:-1], b',"deep":', nest, b"}"], kv),
        ("cloudtrail 50 MB line", ct, [b'{"eventVersion":"1.08","userAgent":"', b"A" * (1 << 20),
                                      b'"}'], ct),
        ("vault 50 MB line", vault, [vault[:-2], b',"x":"', b"A" * (1 << 20), b'"}}'], vault),
    ]
    if big:
        specs.append(("cloudtrail 300 MB one-line document", b"",
                      [b'{"Records":[', ct, b',{"userAgent":"', b"B" * (1 << 20), b'"}]}'], b""))
    out = []
    for name, good, parts, after in specs:
        p = tmp / (name.replace(" ", "_") + ".log")
        reps = 300 if "300 MB" in name else 50 if "50 MB" in name else 1
        with p.open("wb") as fh:
            if good:
                fh.write(good + b"\n")
            for part in parts:
                for _ in range(reps if len(part) == 1 << 20 else 1):
                    fh.write(part)
            fh.write(b"\n" + (after + b"\n" if after else b""))
        out.append((name, p))
    return out


def run(path: Path, native: bool) -> tuple[float, float, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "KEYTRAIL_NATIVE": "1" if native else "0"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "parse", str(path), "--json"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, _, ru = os.wait4(proc.pid, 0)  # this child's own peak RSS (KiB)
    proc.returncode = 0
    wall = time.monotonic() - t0
    rss = ru.ru_maxrss / 1024
    reasons: Counter[str] = Counter()
    for line in out.splitlines():
        doc = orjson.loads(line)
        reasons["quarantined:" + doc["quarantined"]["reason"] if "quarantined" in doc
                else "events"] += 1
    return rss, wall, ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))


def main() -> None:
    big = "--big" in sys.argv[1:]
    print(f"{'input':<38} {'path':<7} {'peak RSS MB':>11} {'wall s':>7}  outcomes")
    with tempfile.TemporaryDirectory() as tmp:
        for name, p in write_cases(big, Path(tmp)):
            for native in (True, False):
                rss, wall, outcomes = run(p, native)
                print(f"{name:<38} {'native' if native else 'python':<7} {rss:>11.0f} "
                      f"{wall:>7.1f}  {outcomes}", flush=True)
            p.unlink()


if __name__ == "__main__":
    main()
