"""The engine-neutral document/action layer shared by the Elasticsearch and OpenSearch sinks.

Turns the local store (event shards, inventory, edges, resource edges, alerts) into bulk
actions with deterministic `_id`s and index names, streaming events shard by shard and
batch by batch so memory never holds the event stream; and turns engine documents back
into local-store records for the auditor read-back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import pyarrow.parquet as pq

from dashboards.fields import (
    ALERT_FIELDS,
    EDGE_FIELDS,
    EVIDENCE_FIELDS,
    INVENTORY_FIELDS,
    RecordField,
    index_name,
)
from parsers.base import KeytrailError
from parsers.schema import nest
from pipelines.store import iter_event_rows

ID_FIELDS: Final[dict[str, str]] = {
    "events": "event.id",
    "inventory": "inventory_id",
    "edges": "edge_id",
    "alerts": "keytrail.alert.id",
}
# Analysts own an alert's triage status once it exists: re-runs replace everything else.
ANALYST_OWNED: Final[dict[str, tuple[str, ...]]] = {"alerts": ("keytrail", "alert", "status")}

@dataclass(frozen=True, slots=True)
class Action:
    """One bulk action: `index` (create or replace), `update` (doc + upsert) or `delete`."""

    family: str
    op: str  # index | update | delete
    index: str
    id: str
    source: dict[str, Any]  # the document (for update: the upsert document)

    def header(self) -> dict[str, Any]:
        return {self.op: {"_index": self.index, "_id": self.id}}

    def body(self) -> dict[str, Any]:
        if self.op == "index":
            return self.source
        # Only when the stored version could not be read first (SearchSink.deliver turns
        # updates into whole-document writes): a partial update keeps the analyst's field.
        owned = ANALYST_OWNED.get(self.family)
        partial = _without(self.source, owned) if owned else self.source
        return {"doc": partial, "upsert": self.source, "detect_noop": True}

    def whole(self, stored: dict[str, Any] | None) -> Action:
        """This update as an `index` of the whole new document, carrying over the
        analyst-owned field from the `stored` version (None: no stored version): a field
        the re-derived record no longer has disappears, which a partial update never does."""
        owned = ANALYST_OWNED.get(self.family)
        source = self.source
        if owned and stored is not None:
            value = _get_path(stored, owned)
            if value is not None:
                source = _with(source, owned, value)
        return Action(self.family, "index", self.index, self.id, source)

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "action": self.header(), "doc": self.source}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Action:
        (op, meta), = d["action"].items()
        return Action(d["family"], op, meta["_index"], meta["_id"], d["doc"])


# --- record <-> document ---------------------------------------------------------------

def _without(doc: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    out = dict(doc)
    head = path[0]
    if len(path) == 1:
        out.pop(head, None)
    elif isinstance(out.get(head), dict):
        out[head] = _without(out[head], path[1:])
    return out


def _with(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = dict(doc)
    head = path[0]
    out[head] = value if len(path) == 1 else _with(
        out[head] if isinstance(out.get(head), dict) else {}, path[1:], value)
    return out


def _get_path(doc: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        doc = doc.get(k) if isinstance(doc, dict) else None
    return doc


def record_to_doc(rec: dict[str, Any], fields: tuple[RecordField, ...],
                  unknown_ns: str) -> dict[str, Any]:
    """Record keys -> ECS names (None dropped). Unknown keys go under `unknown_ns`, where the
    strict mapping rejects them loudly instead of dropping them quietly."""
    by_key = {f.key: f for f in fields}
    flat: dict[str, Any] = {}
    for k, v in rec.items():
        if v is None:
            continue
        spec = by_key.get(k)
        flat[spec.name if spec else f"{unknown_ns}.{k}"] = v
    return nest(flat)


def _get(doc: dict[str, Any], name: str) -> Any:
    if name in doc:
        return doc[name]
    node: Any = doc
    for p in name.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def doc_to_record(doc: dict[str, Any], fields: tuple[RecordField, ...]) -> dict[str, Any]:
    """Inverse of `record_to_doc` for the fields the model knows (missing -> None)."""
    return {f.key: _get(doc, f.name) for f in fields}


def event_doc(flat: dict[str, Any]) -> dict[str, Any]:
    return nest(flat)


def events_index(prefix: str, timestamp: str) -> str:
    # Monthly indices named from the event's own time: a re-run writes every event to the
    # same index as before, so `_id` stays unique (rollover would break idempotency).
    return f"{index_name('events', prefix)}-{timestamp[0:4]}.{timestamp[5:7]}"


def inventory_doc(rec: dict[str, Any]) -> dict[str, Any]:
    return record_to_doc(rec, INVENTORY_FIELDS, "keytrail.inventory")


def inventory_record(doc: dict[str, Any]) -> dict[str, Any]:
    rec = doc_to_record(doc, INVENTORY_FIELDS)
    for f in INVENTORY_FIELDS:
        if f.array and rec[f.key] is None:
            rec[f.key] = []
    return rec


def edge_doc(rec: dict[str, Any]) -> dict[str, Any]:
    r = dict(rec)
    if "window_start" not in r:  # key -> resource edges have no window
        r["window_start"] = r.get("first_seen")
    return record_to_doc(r, EDGE_FIELDS, "keytrail.edge")


def alert_doc(alert: dict[str, Any]) -> dict[str, Any]:
    a = dict(alert)
    ev = a.get("keytrail.alert.evidence")
    if isinstance(ev, list):
        a["keytrail.alert.evidence"] = [nest(e) if isinstance(e, dict) else e for e in ev]
    return record_to_doc(a, ALERT_FIELDS, "keytrail.alert")


def alert_record(doc: dict[str, Any]) -> dict[str, Any]:
    rec = doc_to_record(doc, ALERT_FIELDS)
    ev = rec.get("keytrail.alert.evidence") or []
    rec["keytrail.alert.evidence"] = [doc_to_record(e, EVIDENCE_FIELDS) for e in ev]
    if rec.get("threat.technique") is None:
        rec["threat.technique"] = []
    if rec.get("keytrail.alert.details") is None:
        rec["keytrail.alert.details"] = {}
    return rec


# --- the local store as actions --------------------------------------------------------

def _load_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise KeytrailError(f"{path} not found: run 'keytrail run --out {path.parent}' first, "
                            "or point --out at a keytrail output directory") from None


def _read_parquet_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return list(pq.read_table(path).to_pylist())


def event_actions(out_dir: Path, prefix: str,
                  shards: Iterable[Path] | None = None) -> Iterator[Action]:
    for flat in iter_event_rows(out_dir, shards):
        yield Action("events", "index", events_index(prefix, flat["@timestamp"]),
                     flat["event.id"], event_doc(flat))


def inventory_actions(out_dir: Path, prefix: str) -> Iterator[Action]:
    target = index_name("inventory", prefix)
    for rec in _load_json(out_dir / "inventory.json"):
        yield Action("inventory", "index", target, rec["inventory_id"], inventory_doc(rec))


def edge_actions(out_dir: Path, prefix: str) -> Iterator[Action]:
    target = index_name("edges", prefix)
    for name in ("edges.parquet", "resource_edges.parquet"):
        for rec in _read_parquet_rows(out_dir / name):
            yield Action("edges", "index", target, rec["edge_id"], edge_doc(rec))


def alert_actions(out_dir: Path, prefix: str) -> Iterator[Action]:
    target = index_name("alerts", prefix)
    path = out_dir / "alerts.ndjson"
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                a = orjson.loads(line)
                yield Action("alerts", "update", target, a["keytrail.alert.id"], alert_doc(a))


def store_actions(out_dir: Path, prefix: str,
                  shards: Iterable[Path] | None = None) -> Iterator[Action]:
    """Every document of a local store, family by family (events streamed).

    With `shards`, only those event shards are sent (live mode: the cycle's new units).
    Evidence before conclusions: events go first, then the inventory, edges and alerts
    that cite them, so an analyst following an alert finds its evidence.
    """
    if not (out_dir / "run_summary.json").exists():
        raise KeytrailError(f"{out_dir} is not a keytrail output directory (no "
                            "run_summary.json): run 'keytrail run --out DIR' first")
    yield from event_actions(out_dir, prefix, shards)
    yield from inventory_actions(out_dir, prefix)
    yield from edge_actions(out_dir, prefix)
    yield from alert_actions(out_dir, prefix)
