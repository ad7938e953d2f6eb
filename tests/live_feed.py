"""Random live feeds against a real `keytrail watch` process, compared with one batch run.

A feed (seeded, reproducible) writes into a directory while `keytrail watch` follows it:
Vault audit lines and CloudHSM blocks appended in random byte chunks (partial lines,
request/response pairs and blocks split across writes and cycles, a few malformed
lines), NDJSON CloudTrail files written in pieces, whole CloudTrail documents (plain and
gzip) dropped atomically, rename rotations and copytruncate rotations. The watcher is
killed with SIGKILL at random instants and restarted; with `outages`, the search engine
behind it is stopped and started again at random. At the end the input is made
line-complete, the watcher catches up, and its local store (and the engine's documents)
must equal one `keytrail run` over the final input (tests/live_equivalence.py).

`python -m tests.live_feed --feeds N [--steps S] [--opensearch URL]` runs the long
version and prints one row per feed (`make soak`).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from bench.corpus import cloudhsm_block, cloudtrail_record, vault_pair
from tests.live_equivalence import differences

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
BASE = datetime(2026, 3, 1, tzinfo=UTC)
_CYCLE = re.compile(r"cycle \d+: (\d+) new units")


@dataclass
class FeedResult:
    seed: int
    steps: int
    kills: int = 0
    outages: int = 0
    rotations: int = 0
    copytruncates: int = 0
    bytes_written: int = 0
    events: int = 0
    differences: dict[str, str] = field(default_factory=dict)

    def row(self) -> str:
        return (f"{self.seed:>6} {self.steps:>6} {self.kills:>6} {self.outages:>7} "
                f"{self.rotations:>6} {self.copytruncates:>6} {self.bytes_written:>10,} "
                f"{self.events:>8,} {len(self.differences):>6}")


HEADER = (f"{'seed':>6} {'steps':>6} {'kills':>6} {'outages':>7} {'rot':>6} {'ctrunc':>6} "
          f"{'bytes':>10} {'events':>8} {'diffs':>6}")


class _Appender:
    """A growing log fed from a byte backlog in random chunks (cut anywhere)."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.backlog = b""

    def write_some(self, res: FeedResult, max_chunk: int = 4000) -> None:
        if not self.backlog:
            return
        n = min(len(self.backlog), self.rng.randint(1, max_chunk))
        with self.path.open("ab") as fh:
            fh.write(self.backlog[:n])
        self.backlog = self.backlog[n:]
        res.bytes_written += n

    def flush(self, res: FeedResult) -> None:
        while self.backlog:
            self.write_some(res, 1 << 20)

    def finish_record(self, res: FeedResult, sep: bytes) -> None:
        """Writers rotate between records: complete the one being written."""
        if not self.path.exists() or not self.path.stat().st_size:
            return
        with self.path.open("rb") as fh:
            fh.seek(-min(len(sep), self.path.stat().st_size), 2)
            tail = fh.read()
        if tail.endswith(sep):
            return
        i = self.backlog.find(sep)
        n = len(self.backlog) if i < 0 else i + len(sep)
        with self.path.open("ab") as fh:
            fh.write(self.backlog[:n])
        self.backlog = self.backlog[n:]
        res.bytes_written += n

    def rotate(self, res: FeedResult, n: int) -> None:
        """logrotate `create`: rename, the writer reopens a new file."""
        if self.path.exists():
            os.rename(self.path, self.path.with_name(f"{self.path.name}.{n}"))
            res.rotations += 1

    def copytruncate(self, res: FeedResult, n: int) -> None:
        """logrotate `copytruncate`: copy (appearing under its name once complete),
        truncate the original in place."""
        if not self.path.exists():
            return
        hidden = self.path.with_name(f".{self.path.name}.{n}.tmp")
        shutil.copyfile(self.path, hidden)
        with self.path.open("r+b") as fh:
            fh.truncate(0)
        os.rename(hidden, self.path.with_name(f"{self.path.name}.{n}"))
        res.copytruncates += 1


def _vault(rng: random.Random, i: int) -> bytes:
    if rng.random() < 0.01:
        return b'{"time":"2026-03-01T00:00:00Z","type":"request","request":' + b"\n"
    a, b = vault_pair(rng, BASE + timedelta(seconds=7 * i), i)
    if rng.random() < 0.03:  # never answered
        return orjson.dumps(a) + b"\n"
    return orjson.dumps(a) + b"\n" + orjson.dumps(b) + b"\n"


def _spawn(src: Path, work: Path, sink: list[str], once: bool = False
           ) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "pipelines.cli", "watch", str(src), "--out",
           str(work / "out"), "--state", str(work / "state"), "--interval", "0.05",
           "--settle", "0.3", *sink]
    cmd += ["--once"] if once else ["-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if once else subprocess.DEVNULL)


def catch_up(src: Path, work: Path, sink: list[str], limit: int = 60) -> None:
    """Run `watch --once` until a cycle finds nothing new."""
    for _ in range(limit):
        p = _spawn(src, work, sink, once=True)
        _, err = p.communicate(timeout=600)
        m = _CYCLE.search(err.decode("utf-8", "replace"))
        if p.returncode != 0 or m is None:
            raise AssertionError(f"watch --once failed ({p.returncode}): {err.decode()[-2000:]}")
        if m.group(1) == "0":
            return
    raise AssertionError("the watcher did not catch up")


def run_feed(seed: int, work: Path, steps: int = 40, sink: list[str] | None = None,
             outage: tuple[Callable[[], None], Callable[[], None]] | None = None,
             batch: Callable[[Path, Path], None] | None = None) -> FeedResult:
    """One random feed; returns what happened and how the live store differs from batch.
    `outage` = (stop engine, start engine); `batch(src, out)` makes the reference."""
    rng = random.Random(seed)
    res = FeedResult(seed, steps)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    src.mkdir()
    vault = _Appender(src / "vault" / "audit.log", rng)
    hsm = _Appender(src / "hsm" / "audit.log", rng)
    for a in (vault, hsm):
        a.path.parent.mkdir()
    sink = sink or []
    proc = _spawn(src, work, sink)
    n_vault = n_hsm = n_ct = 0
    hsm_sample = False
    vault_samples: set[str] = set()
    down = False
    try:
        for step in range(steps):
            for _ in range(rng.randint(1, 6)):
                vault.backlog += _vault(rng, n_vault)
                n_vault += 1
            for _ in range(rng.randint(0, 2)):
                hsm.backlog += cloudhsm_block(rng, BASE + timedelta(seconds=11 * n_hsm),
                                              n_hsm).encode()
                n_hsm += 1
            if not hsm_sample and rng.random() < 0.08:  # real samples: logins, repeats
                # Once: appended again, its records would be re-deliveries (same ids) in
                # another session context, which dedupe keeps by position (path, offset) in
                # batch but by commit order in live mode (see pipelines/dedupe.py).
                hsm_sample = True
                hsm.backlog += (SAMPLES / "hsm" / "cloudhsm-hsm-audit.log").read_bytes() \
                    .rstrip(b"\n") + b"\n\n"
            left = [n for n in ("vault-audit-file.log", "vault-audit-syslog.log",
                                "vault-kmip-audit.log") if n not in vault_samples]
            if left and rng.random() < 0.05:  # each once, like the CloudHSM sample
                name = rng.choice(left)
                vault_samples.add(name)
                vault.backlog += (SAMPLES / "hashicorp_vault" / name).read_bytes() \
                    .rstrip(b"\n") + b"\n"
            vault.write_some(res)
            hsm.write_some(res, 700)
            r = rng.random()
            if r < 0.15:
                recs = [cloudtrail_record(rng, BASE + timedelta(seconds=13 * (n_ct + j)),
                                          n_ct + j) for j in range(rng.randint(1, 30))]
                n_ct += len(recs)
                name = src / "ct" / f"ct-{step:04d}"
                name.parent.mkdir(exist_ok=True)
                if rng.random() < 0.5:  # NDJSON written in two pieces
                    data = b"".join(orjson.dumps(x) + b"\n" for x in recs)
                    cut = rng.randint(1, len(data))
                    path = name.with_suffix(".ndjson")
                    path.write_bytes(data[:cut])
                    time.sleep(rng.uniform(0, 0.2))
                    with path.open("ab") as fh:
                        fh.write(data[cut:])
                else:  # a whole document, dropped atomically (maybe gzip)
                    data = orjson.dumps({"Records": recs}, option=orjson.OPT_INDENT_2)
                    path = name.with_suffix(".json")
                    if rng.random() < 0.5:
                        data, path = gzip.compress(data, mtime=0), name.with_suffix(".json.gz")
                    tmp = path.with_name("." + path.name + ".tmp")
                    tmp.write_bytes(data)
                    os.rename(tmp, path)
                res.bytes_written += len(data)
            elif r < 0.22:
                # Rotate between pairs: a pair split by a rotation is two halves with one
                # event id in batch (request_only, response_only); dedupe keeps one half,
                # and which one can differ between live and batch (README, known limits).
                vault.flush(res)
                if r < 0.19:
                    vault.rotate(res, step)
                else:
                    vault.copytruncate(res, step)
            elif r < 0.24:
                hsm.finish_record(res, b"\n\n")
                hsm.rotate(res, step)
            time.sleep(rng.uniform(0.0, 0.15))
            if rng.random() < 0.12:
                time.sleep(rng.uniform(0.0, 0.6))  # let a cycle get somewhere, then kill it
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                res.kills += 1
                proc = _spawn(src, work, sink)
            if outage is not None and rng.random() < 0.08:
                (outage[1] if down else outage[0])()
                res.outages += 0 if down else 1
                down = not down
        vault.flush(res)
        hsm.flush(res)
        if outage is not None and down:
            time.sleep(rng.uniform(0.5, 2.0))  # the daemon rides the outage out
            outage[1]()
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res.kills += 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    catch_up(src, work, sink)
    ref = work / "batch"
    if batch is None:
        from pipelines.run import run_batch

        run_batch([str(src)], str(ref))
    else:
        batch(src, ref)
    res.events = orjson.loads((ref / "run_summary.json").read_bytes())["totals"]["events"]
    res.differences = differences(work / "out", ref,
                                  ignore_paths=bool(res.rotations or res.copytruncates))
    return res


def _engine_feed(seed: int, work: Path, steps: int, url: str) -> FeedResult:
    from tests.test_sink_opensearch import Proxy

    prefix = f"ktsoak{seed}"
    setup = subprocess.run([sys.executable, "-m", "pipelines.cli", "setup", "--sink",
                            "opensearch", "--sink-url", url, "--index-prefix", prefix,
                            "--roles-out", str(work.parent / "roles")], cwd=REPO,
                           capture_output=True, text=True, timeout=300, check=False)
    if setup.returncode != 0:
        raise SystemExit(setup.stderr[-2000:])
    proxy = Proxy(url)
    proxy.start()
    try:
        sink = ["--sink", "opensearch", "--sink-url", proxy.url, "--index-prefix", prefix]
        r = run_feed(seed, work, steps, sink=sink, outage=(proxy.stop, proxy.start))
        r.differences.update(engine_differences(url, prefix, work / "batch",
                                                bool(r.rotations or r.copytruncates)))
        return r
    finally:
        proxy.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--work", default="")
    ap.add_argument("--opensearch", help="URL of a running OpenSearch node (set up per feed "
                    "with its own index prefix); outages are injected by a proxy")
    args = ap.parse_args(argv)
    import tempfile

    root = Path(args.work or tempfile.mkdtemp(prefix="keytrail-soak-"))
    print(HEADER, flush=True)
    failed = 0
    totals = FeedResult(0, 0)
    for seed in range(args.first_seed, args.first_seed + args.feeds):
        if args.opensearch:
            r = _engine_feed(seed, root / f"feed-{seed}", args.steps, args.opensearch)
        else:
            r = run_feed(seed, root / f"feed-{seed}", args.steps)
        print(r.row(), flush=True)
        for k, v in r.differences.items():
            print(f"       {k}: {v}", flush=True)
        failed += bool(r.differences)
        for name in ("steps", "kills", "outages", "rotations", "copytruncates",
                     "bytes_written", "events"):
            setattr(totals, name, getattr(totals, name) + getattr(r, name))
        if not r.differences:
            shutil.rmtree(root / f"feed-{seed}", ignore_errors=True)
    print(f"{'total':>6} {totals.row()[7:]}  feeds {args.feeds}, feeds with differences "
          f"{failed}", flush=True)
    return 1 if failed else 0



def engine_documents(url: str, prefix: str) -> dict[tuple[str, str], str]:
    """Every document of the prefix's indices: (index, _id) -> canonical JSON source."""
    from opensearchpy import OpenSearch
    from opensearchpy.helpers import scan

    client = OpenSearch(url, timeout=60)
    try:
        client.indices.refresh(index=f"{prefix}-*", ignore_unavailable=True)
        return {(h["_index"], h["_id"]): orjson.dumps(h["_source"], option=orjson.OPT_SORT_KEYS)
                .decode() for h in scan(client, index=f"{prefix}-*",
                                        query={"query": {"match_all": {}}})}
    finally:
        client.close()


def expected_documents(out: Path, prefix: str) -> dict[tuple[str, str], str]:
    """The documents one batch run's local store becomes in the engine."""
    return {k: v[-1] for k, v in _candidates(out, prefix).items()}


def _candidates(out: Path, prefix: str) -> dict[tuple[str, str], list[str]]:
    """(index, _id) -> every document the store has for it: more than one when the input
    holds the same event twice (one _id; which copy the engine keeps is the order of
    delivery until duplicate events are dropped before delivery, issue 11)."""
    from pipelines.sinks.documents import store_actions

    out_docs: dict[tuple[str, str], list[str]] = {}
    for a in store_actions(out, prefix):
        out_docs.setdefault((a.index, a.id), []).append(
            orjson.dumps(a.source, option=orjson.OPT_SORT_KEYS).decode())
    return out_docs


def engine_differences(url: str, prefix: str, ref: Path, ignore_paths: bool
                       ) -> dict[str, str]:
    from tests.live_equivalence import _scrub

    def canon(docs: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
        if not ignore_paths:
            return docs
        return {k: orjson.dumps(_scrub(_flat_paths(orjson.loads(v))),
                                option=orjson.OPT_SORT_KEYS).decode() for k, v in docs.items()}

    got = canon(engine_documents(url, prefix))
    cands = _candidates(ref, prefix)
    want = {k: {canon({k: d})[k] for d in v} for k, v in cands.items()}
    out: dict[str, str] = {}
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    if extra or missing:
        out["engine_ids"] = f"only engine: {extra[:3]}; only batch: {missing[:3]}"
    changed = sorted(k for k in set(got) & set(want) if got[k] not in want[k])
    if changed:
        k = changed[0]
        out["engine_content"] = (f"{len(changed)} documents differ, e.g. {k}: engine "
                                 f"{got[k][:400]} vs batch {sorted(want[k])[0][:400]}")
    return out


def _flat_paths(doc: object) -> object:
    """Engine documents nest `log.file.path` as log -> file -> path: drop it like the
    flat key (rotated files)."""
    if isinstance(doc, dict):
        return {k: _flat_paths(v) for k, v in doc.items()
                if not (k == "file" and isinstance(v, dict) and "path" in v)}
    if isinstance(doc, list):
        return [_flat_paths(v) for v in doc]
    return doc


if __name__ == "__main__":
    sys.exit(main())
