"""Coverage-guided fuzzing of one target with atheris (libFuzzer).

    python -m tests.fuzz.run_atheris TARGET [--seconds N] [--workdir DIR] [-- libFuzzer args]

The seed corpus is built at run time in WORKDIR/corpus-TARGET from sample_logs/, the
regression inputs in tests/fuzz_regressions/ and, when present, ../shared/real_logs
(first 64 KiB of each file; real logs are never copied into the repository). New inputs
libFuzzer finds stay in WORKDIR; a crash is written as WORKDIR/crash-<sha1> and the run
exits non-zero. `make fuzz` runs every target for longer; tests/test_fuzz.py runs a short
budget in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED_DIRS = (REPO / "sample_logs", REPO / "tests" / "fuzz_regressions",
             REPO.parent / "shared" / "real_logs")
SEED_BYTES = 64 * 1024
# Findings whose fix is owned elsewhere and not merged on this branch yet: regression file
# -> (traceback text that identifies it, where it is fixed). They are left out of the seed
# corpus (else every run stops at them) and tests/test_fuzz.py reports them as xfail, not
# hidden. Remove an entry once its fix is in.
OPEN_FINDINGS: dict[str, tuple[str, str]] = {}


def build_corpus(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for root in SEED_DIRS:
        if not root.is_dir():
            continue
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.is_symlink() and f.suffix not in (".md", ".tsv") \
                    and f.name not in OPEN_FINDINGS:
                data = f.read_bytes()[:SEED_BYTES]
                (dest / hashlib.sha1(data).hexdigest()).write_bytes(data)
                n += 1
    return n


def _inherited_rss_mb() -> int:
    """Peak RSS this process started with: Linux keeps ru_maxrss across fork+exec, so a
    fuzzer started by a large parent (pytest late in the suite: ~4 GB) would exceed a fixed
    -rss_limit_mb before its first input. The limit is set above this baseline."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("target")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--max-len", type=int, default=4096,
                    help="longest input libFuzzer builds (short inputs: more runs per second)")
    ap.add_argument("--workdir", default=str(REPO / ".cache-fuzz"))
    ap.add_argument("libfuzzer", nargs="*")
    args = ap.parse_args()
    import atheris

    with atheris.instrument_imports(include=["parsers"]):
        from tests.fuzz.targets import TARGETS
    if args.target not in TARGETS:
        sys.exit(f"unknown target {args.target!r}; one of {', '.join(TARGETS)}")
    work = Path(args.workdir)
    corpus = work / f"corpus-{args.target}"
    build_corpus(corpus)
    target = TARGETS[args.target]
    argv = [sys.argv[0], f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
            f"-dict={Path(__file__).with_name('keytrail.dict')}",
            f"-artifact_prefix={work}/", "-print_final_stats=1", "-timeout=20",
            f"-rss_limit_mb={_inherited_rss_mb() + 3072}", *args.libfuzzer, str(corpus)]
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
