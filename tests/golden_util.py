"""Golden-file helpers: parse a sample file and compare with its checked-in expectation.

Set KEYTRAIL_UPDATE_GOLDEN=1 to rewrite expectations; review the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from parsers.base import ParseOptions, Quarantined, Skipped
from parsers.detect import parse_bytes
from parsers.schema import KeyEvent

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
GOLDEN = REPO / "tests" / "golden"
REAL_LOGS = REPO.parent / "shared" / "real_logs"
UPDATE = os.environ.get("KEYTRAIL_UPDATE_GOLDEN") == "1"


def read_input(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    return data


def render(path: Path, options: ParseOptions | None = None) -> dict[str, Any]:
    """Parse one file and render outcomes as a JSON-able golden document."""
    rel = path.relative_to(REPO).as_posix()
    dataset, outcomes = parse_bytes(read_input(path), rel, options)
    events: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    for o in outcomes:
        if isinstance(o, KeyEvent):
            events.append(o.to_flat())
        elif isinstance(o, Skipped):
            skipped.append({"reason": o.reason, "offset": o.offset})
        elif isinstance(o, Quarantined):
            quarantined.append(o.to_dict())
    return {
        "path": rel,
        "dataset": dataset,
        "records_in": len(outcomes),
        "events": events,
        "skipped": skipped,
        "quarantined": quarantined,
    }


def golden_path(sample: Path) -> Path:
    rel = sample.relative_to(SAMPLES)
    return GOLDEN / rel.parent / (rel.name + ".golden.json")


def check_golden(sample: Path) -> None:
    got = render(sample)
    target = golden_path(sample)
    text = orjson.dumps(got, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if UPDATE or not target.exists():
        if not UPDATE:
            raise AssertionError(
                f"no golden file for {sample}; run with KEYTRAIL_UPDATE_GOLDEN=1 and review"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text)
        return
    expected = orjson.loads(target.read_bytes())
    assert got == expected, f"{sample} differs from {target} (KEYTRAIL_UPDATE_GOLDEN=1 to update)"


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.name != "README.md")
