"""Peak memory of Vault request/response pairing under requests that are never answered.

Prints a table; never fails a build. Usage: python bench/vault_pending_memory.py
[N_REQUESTS [REQUEST_BYTES]] (default 1500 requests of ~1,000,000 bytes, no responses).
Each measurement is a fresh process (peak RSS = ru_maxrss) that parses a generated stream
without writing it to disk, with the compiled fast path and with KEYTRAIL_NATIVE=0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, resource, sys, time
from parsers.vault import VaultAuditParser
from parsers.base import Quarantined, Skipped
n, size = int(sys.argv[1]), int(sys.argv[2])

class Requests(io.RawIOBase):
    '''n request lines of ~size bytes each, generated on the fly, none answered.'''
    def __init__(self):
        self.i, self.buf = 0, b""
    def readable(self):
        return True
    def readinto(self, b):
        while len(self.buf) < len(b) and self.i < n:
            head = ('{"time":"2024-05-14T10:00:00Z","type":"request","auth":{"entity_id":"e"},'
                    '"request":{"id":"r%d","operation":"update","path":"transit/encrypt/k",'
                    '"mount_type":"transit","data":{"plaintext":"' % self.i).encode()
            self.buf += head + b"A" * (size - len(head) - 5) + b'"}}}\n'
            self.i += 1
        k = min(len(b), len(self.buf))
        b[:k], self.buf = self.buf[:k], self.buf[k:]
        return k

t0 = time.perf_counter()
counts = {"events": 0, "other": 0}
for o in VaultAuditParser().parse(io.BufferedReader(Requests(), 1 << 20), "gen"):
    counts["events" if not isinstance(o, (Skipped, Quarantined)) else "other"] += 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{peak:.0f} {counts['events']} {time.perf_counter() - t0:.1f}")
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    print(f"{n:,} unanswered requests of {size:,} bytes")
    print(f"{'path':<8} {'peak RSS MB':>12} {'events':>8} {'wall s':>8}")
    for label, native in (("native", "1"), ("python", "0")):
        env = dict(os.environ, PYTHONPATH=str(REPO), KEYTRAIL_NATIVE=native)
        p = subprocess.run([sys.executable, "-c", CHILD, str(n), str(size)], env=env, cwd=REPO,
                           capture_output=True, text=True, check=False)
        if p.returncode != 0:
            print(f"{label:<8} failed: {p.stderr[-300:]}")
            continue
        peak, events, wall = p.stdout.split()
        print(f"{label:<8} {float(peak):>12,.0f} {int(events):>8,} {float(wall):>8.1f}")


if __name__ == "__main__":
    main()
