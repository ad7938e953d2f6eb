"""Parse+normalize throughput per log family vs raw orjson.loads over the same bytes.

ratio = (time orjson.loads needs for the bytes) / (time keytrail needs to parse and
normalize the same bytes); the target is >= 0.5.

Prints a table; never fails a build. Usage: python bench/parse_throughput.py [N_PER_FAMILY]
"""

from __future__ import annotations

import gzip
import io
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.corpus import write_corpus
from parsers import native
from parsers.base import REGISTRY, ParseOptions
from parsers.detect import parse_stream
from parsers.schema import KeyEvent


def raw_rate(blobs: list[bytes]) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    for b in blobs:
        if b[:1] == b"{" and b'"Records"' in b[:20]:
            n += len(orjson.loads(b)["Records"])
        else:
            for line in b.splitlines():
                if line:
                    orjson.loads(line)
                    n += 1
    return n, time.perf_counter() - t0


def parse_rate(blobs: list[bytes], names: list[str]) -> tuple[int, int, float]:
    parsers = REGISTRY.create_all(ParseOptions())
    events = records = 0
    t0 = time.perf_counter()
    for b, name in zip(blobs, names, strict=True):
        _, outcomes = parse_stream(io.BytesIO(b), name, parsers)
        for o in outcomes:
            records += 1
            if type(o) is KeyEvent:
                events += 1
    return events, records, time.perf_counter() - t0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(Path(tmp), n * 4)
        files = sorted(Path(tmp).iterdir())
        groups: dict[str, list[Path]] = {}
        for f in files:
            groups.setdefault(f.name.split("_")[0], []).append(f)
        print("compiled fast paths:", "loaded" if native.available() else
              "not loaded (make native; KEYTRAIL_NATIVE=0 disables them)")
        print(f"{'family':<12} {'records':>9} {'events':>9} {'parse ev/s':>12} "
              f"{'orjson rec/s':>13} {'ratio':>7} {'MB':>7}")
        for fam, paths in sorted(groups.items()):
            blobs = [gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
                     for p in paths]
            mb = sum(map(len, blobs)) / 1e6
            events, records, dt = parse_rate(blobs, [p.name for p in paths])
            if fam == "hsm":
                raw = "n/a (text)"
                print(f"{fam:<12} {records:>9,} {events:>9,} {events / dt:>12,.0f} {raw:>13} "
                      f"{'':>7} {mb:>7.1f}")
                continue
            rn, rdt = raw_rate(blobs)
            ratio = rdt / dt  # same bytes: orjson time / parse time
            print(f"{fam:<12} {records:>9,} {events:>9,} {events / dt:>12,.0f} "
                  f"{rn / rdt:>13,.0f} {ratio:>7.2f} {mb:>7.1f}")


if __name__ == "__main__":
    main()
