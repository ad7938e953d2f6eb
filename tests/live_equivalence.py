"""Live output vs batch output, by content: what `keytrail watch` left in a local store must
equal what one `keytrail run` over the final input writes.

Compared: every event (all fields), inventory records, usage and resource edges, alerts,
quarantined records, the GraphML graph (bytes) and the run totals. Not compared: the
layout of event shards (one per unit vs one per file) and the order of quarantine lines,
which differ by construction, and the per-file list of run_summary.json (live lists byte
ranges). With `ignore_paths` (feeds that rotate files) the file path of events and
quarantined records is left out: live records the name a file had when its bytes were
read, batch only knows its final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipelines.store import read_events

PATH_KEYS = frozenset({"log.file.path", "log_file_path"})


def _scrub(obj: Any) -> Any:
    """`obj` without file paths at any depth (provenance of rotated files)."""
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if k not in PATH_KEYS}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    return obj


def _rows(path: Path) -> list[str]:
    if not path.exists():
        return []
    return sorted(json.dumps(r, sort_keys=True, default=str)
                  for r in pq.read_table(path).to_pylist())


def _lines(path: Path, drop: str | None = None) -> list[str]:
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    for r in rows:
        r.pop(drop, None)
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def _events(out: Path, ignore_paths: bool) -> list[str]:
    rows = []
    for r in read_events(out):
        if ignore_paths:
            r.pop("log.file.path", None)
        rows.append(json.dumps(r, sort_keys=True))
    return sorted(rows)


def store_view(out: Path, ignore_paths: bool = False) -> dict[str, Any]:
    """Everything a reader of the local store sees, in a comparable form."""
    summary = json.loads((out / "run_summary.json").read_text())
    scrub = _scrub if ignore_paths else (lambda x: x)
    # Quarantined records name their file as `log.file.path` (Quarantined.to_dict).
    quarantine = _lines(out / "quarantine.ndjson", "log.file.path" if ignore_paths else None)
    return {
        "events": _events(out, ignore_paths),
        "inventory": sorted(json.dumps(scrub(r), sort_keys=True)
                            for r in json.loads((out / "inventory.json").read_text())),
        "edges": _rows(out / "edges.parquet"),
        "resource_edges": _rows(out / "resource_edges.parquet"),
        "alerts": sorted(json.dumps(scrub(json.loads(a))) for a in
                         _lines(out / "alerts.ndjson")),
        "quarantine": quarantine,
        "graphml": (out / "graph.graphml").read_text(),
        "totals": summary["totals"],
        "counts": {k: summary[k] for k in ("keys", "edges", "resource_edges", "alerts",
                                           "alerts_total", "keys_by_state",
                                           "events_by_dataset", "accounting_ok")},
    }


def differences(live: Path, batch: Path, ignore_paths: bool = False) -> dict[str, str]:
    """Part name -> a short description of how live differs from batch ({} if equal)."""
    a, b = store_view(live, ignore_paths), store_view(batch, ignore_paths)
    out: dict[str, str] = {}
    for k in b:
        if a[k] != b[k]:
            if isinstance(b[k], list):
                extra = sorted(set(a[k]) - set(b[k]))
                missing = sorted(set(b[k]) - set(a[k]))
                out[k] = (f"live {len(a[k])} vs batch {len(b[k])}; only live: "
                          f"{extra[:1]}; only batch: {missing[:1]}")
            else:
                out[k] = f"live {str(a[k])[:300]} vs batch {str(b[k])[:300]}"
    return out
