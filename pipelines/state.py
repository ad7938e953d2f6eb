"""Run state that survives restarts: merged partials + source checkpoints, as JSON.

Live mode commits this file atomically only after the sink acknowledged a cycle's results,
so a crash at any instant resumes from a state that matches what the sink holds.
JSON (not pickle) so a state directory is inspectable and never executes code on load.
The dedupe index (8 bytes per event, pipelines.dedupe) is kept beside it as one `.npy`
per unit under `ids/`, written before the JSON that lists it and never changed after.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from detectors.base import Bucket, Evidence, merge_alerts
from detectors.graph import EdgeAccumulator, EdgeKey, ResourceAccumulator
from detectors.inventory import KeyAccumulator
from parsers.schema import KeyEvent
from pipelines.outdir import atomic_file, atomic_write
from pipelines.process import (
    BucketKey,
    Counts,
    FileResult,
    GateKey,
    count_items,
    merge_gated,
    shard_name,
    subtract_gated,
)

STATE_VERSION: Final[int] = 1


@dataclass
class RunState:
    """Merged partials of everything processed so far, plus per-source checkpoints."""

    keys: dict[str, KeyAccumulator] = field(default_factory=dict)
    edges: dict[EdgeKey, EdgeAccumulator] = field(default_factory=dict)
    resources: dict[tuple[str, str], ResourceAccumulator] = field(default_factory=dict)
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    gated: dict[GateKey, Counts] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # unit id -> summary
    max_ts: str | None = None
    checkpoints: dict[str, Any] = field(default_factory=dict)  # source -> its progress
    delivered: dict[str, str] = field(default_factory=dict)  # doc id -> content hash
    cycle: int = 0
    # unit id -> uint64 id prefixes of its event shard rows, in row order (pipelines.dedupe)
    ids: dict[str, Any] = field(default_factory=dict)
    # units whose ids are in the committed state (read_state); never serialized
    committed: frozenset[str] = field(default=frozenset(), compare=False)

    def absorb(self, res: FileResult | RunState) -> RunState:
        """Merge one unit's partials, or another state's (each unit absorbed only once)."""
        for uid, acc in res.keys.items():
            cur = self.keys.get(uid)
            self.keys[uid] = acc if cur is None else cur.merge(acc)
        for ek, ea in res.edges.items():
            cur_e = self.edges.get(ek)
            self.edges[ek] = ea if cur_e is None else cur_e.merge(ea)
        for rk, ra in res.resources.items():
            cur_r = self.resources.get(rk)
            self.resources[rk] = ra if cur_r is None else cur_r.merge(ra)
        for bk, b in res.buckets.items():
            cur_b = self.buckets.get(bk)
            self.buckets[bk] = b if cur_b is None else cur_b.merge(b)
        merge_gated(self.gated, res.gated)
        for aid, a in res.alerts.items():
            cur_a = self.alerts.get(aid)
            self.alerts[aid] = a if cur_a is None else merge_alerts(cur_a, a)
        if isinstance(res, RunState):
            self.files.update(res.files)
            self.ids.update(res.ids)
        else:
            unit = res.summary.get("unit", res.summary["path"])
            self.files[unit] = res.summary
            if res.ids is not None:
                self.ids[unit] = res.ids
        if res.max_ts and (self.max_ts is None or res.max_ts > self.max_ts):
            self.max_ts = res.max_ts
        return self

    def retract(self, dup: FileResult) -> None:
        """Subtract the additive counters of `dup` (a partial folded from dropped duplicate
        events). Everything else in a partial is a min/max/bounded set/keyed-by-event-id
        aggregate, which a second copy of the same event leaves unchanged; an entry left
        with nothing counted (a copy whose content differed, e.g. a provenance-derived
        entity) is removed."""
        for uid, d in dup.keys.items():
            acc = self.keys.get(uid)
            if acc is not None:
                acc.retract(d)
        for ek, de in dup.edges.items():
            ea = self.edges.get(ek)
            if ea is not None and ea.retract(de):
                del self.edges[ek]
        for rk, dr in dup.resources.items():
            ra = self.resources.get(rk)
            if ra is not None and ra.retract(dr):
                del self.resources[rk]
        for bk, db in dup.buckets.items():
            b = self.buckets.get(bk)
            if b is not None and b.retract(db):
                del self.buckets[bk]
        subtract_gated(self.gated, dup.gated)
        for aid, da in dup.alerts.items():
            a = self.alerts.get(aid)
            if a is not None:
                n = a["keytrail.alert.event_count"] - da["keytrail.alert.event_count"]
                if n > 0:
                    self.alerts[aid] = {**a, "keytrail.alert.event_count": n}
                else:
                    del self.alerts[aid]

    def repoint(self, kept: list[KeyEvent], dup: FileResult) -> None:
        """Point the history and evidence entries of `kept` events (live mode: committed
        copies that a dropped later copy precedes by path and offset) at those copies."""
        by_id = {ev.event_id: ev for ev in kept}
        for uid in dup.keys:
            acc = self.keys.get(uid)
            if acc is not None:
                for ev in kept:
                    acc.repoint(ev)
        for bk in dup.buckets:
            b = self.buckets.get(bk)
            if b is not None:
                b.evidence = [Evidence.of(by_id[e.event_id]) if e.event_id in by_id else e
                              for e in b.evidence]
        for aid in dup.alerts:
            a = self.alerts.get(aid)
            if a is not None:
                a["keytrail.alert.evidence"] = [
                    Evidence.of(by_id[e["event.id"]]).to_dict() if e["event.id"] in by_id
                    else e for e in a["keytrail.alert.evidence"]]


def _key_to_json(a: KeyAccumulator) -> dict[str, Any]:
    return {"uid": a.uid, "first_seen": a.first_seen, "last_seen": a.last_seen,
            "attrs": {k: list(v) for k, v in a.attrs.items()}, "aliases": sorted(a.aliases),
            "history": a.history, "history_truncated": a.history_truncated,
            "last_used": a.last_used, "op_counts": a.op_counts,
            "failures": a.failures, "principals": sorted(a.principals),
            "admins": sorted(a.admins), "evidence": sorted(a.evidence),
            "datasets": sorted(a.datasets)}


def _key_from_json(d: dict[str, Any]) -> KeyAccumulator:
    return KeyAccumulator(
        uid=d["uid"], first_seen=d["first_seen"], last_seen=d["last_seen"],
        attrs={k: (v[0], v[1], v[2]) for k, v in d["attrs"].items()},
        aliases=set(d["aliases"]), history=d["history"],
        history_truncated=d.get("history_truncated", False), last_used=d["last_used"],
        op_counts=d["op_counts"], failures=d["failures"], principals=set(d["principals"]),
        admins=set(d["admins"]), evidence=set(d["evidence"]), datasets=set(d["datasets"]))


def _edge_to_json(e: EdgeAccumulator) -> dict[str, Any]:
    return {"count": e.count, "failures": e.failures, "first_seen": e.first_seen,
            "last_seen": e.last_seen, "source_ips": sorted(e.source_ips),
            "user_name": e.user_name, "principal_type": e.principal_type,
            "principal_account": e.principal_account, "key_account": e.key_account,
            "dataset": e.dataset}


def _edge_from_json(d: dict[str, Any]) -> EdgeAccumulator:
    return EdgeAccumulator(**{**d, "source_ips": set(d["source_ips"])})


def _bucket_to_json(b: Bucket) -> dict[str, Any]:
    return {"start": b.start, "count": b.count, "failures": b.failures,
            "first_seen": b.first_seen, "last_seen": b.last_seen,
            "evidence": [[e.event_id, e.timestamp, e.log_file_path, e.log_offset]
                         for e in b.evidence],
            "values": {k: sorted(v) for k, v in b.values.items()}}


def _bucket_from_json(d: dict[str, Any]) -> Bucket:
    return Bucket(start=d["start"], count=d["count"], failures=d["failures"],
                  first_seen=d["first_seen"], last_seen=d["last_seen"],
                  evidence=[Evidence(*e) for e in d["evidence"]],
                  values={k: set(v) for k, v in d["values"].items()})


def _counts_from_json(pairs: list[list[int]], n: int) -> Counts:
    if not n:
        return {p[0]: p[1] for p in pairs}
    arr = array("I", bytes(4 * n))
    for i, c in pairs:
        arr[i] = c
    return arr


SEP: Final[str] = "\x1f"


def dump_state(st: RunState) -> bytes:
    doc = {
        "version": STATE_VERSION,
        "keys": [_key_to_json(a) for _, a in sorted(st.keys.items())],
        "edges": [[list(k), _edge_to_json(v)] for k, v in sorted(st.edges.items())],
        "resources": [[list(k), [v.count, v.first_seen, v.last_seen]]
                      for k, v in sorted(st.resources.items())],
        "buckets": [[list(k), _bucket_to_json(v)] for k, v in sorted(st.buckets.items())],
        # [key, [[slot, count]...], dense length or 0 for a sparse series]
        "gated": [[list(k), [list(p) for p in count_items(v)],
                   len(v) if isinstance(v, array) else 0]
                  for k, v in sorted(st.gated.items())],
        "alerts": [st.alerts[k] for k in sorted(st.alerts)],
        "files": st.files, "max_ts": st.max_ts, "checkpoints": st.checkpoints,
        "delivered": st.delivered, "cycle": st.cycle,
        "ids": {unit: len(v) for unit, v in st.ids.items()},
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def load_state(data: bytes, path: Path | None = None) -> RunState:
    """The state in `data`; with the state file's `path`, its id index is loaded too."""
    doc = orjson.loads(data)
    if doc.get("version") != STATE_VERSION:
        raise ValueError(f"state version {doc.get('version')} is not {STATE_VERSION}")
    return RunState(
        keys={d["uid"]: _key_from_json(d) for d in doc["keys"]},
        edges={(k[0], k[1], k[2], k[3]): _edge_from_json(v) for k, v in doc["edges"]},
        resources={(k[0], k[1]): ResourceAccumulator(v[0], v[1], v[2])
                   for k, v in doc["resources"]},
        buckets={(k[0], k[1], k[2]): _bucket_from_json(v) for k, v in doc["buckets"]},
        gated={(k[0], k[1], k[2]): _counts_from_json(v, n) for k, v, n in doc.get("gated", [])},
        alerts={a["keytrail.alert.id"]: a for a in doc["alerts"]},
        files=doc["files"], max_ts=doc["max_ts"], checkpoints=doc["checkpoints"],
        delivered=doc["delivered"], cycle=doc["cycle"],
        ids={} if path is None else {unit: _load_ids(path, unit, n)
                                     for unit, n in doc.get("ids", {}).items()})


def _load_ids(state_path: Path, unit: str, n: int) -> Any:
    p = _ids_path(state_path, unit)
    ids = np.load(p, allow_pickle=False)
    if len(ids) != n:
        raise ValueError(f"{p} holds {len(ids)} ids, the state file says {n}")
    return ids


def _ids_path(state_path: Path, unit: str) -> Path:
    return state_path.parent / "ids" / f"{shard_name(unit)}.npy"




def commit_state(path: Path, st: RunState) -> None:
    """Atomic, durable replace of the state file (write, fsync, rename, fsync dir).

    The id index of each unit new since the last commit is made durable first; a crash
    before the state file's rename leaves only files no committed state refers to (the
    unit is processed again and its file rewritten).
    """
    for unit in sorted(set(st.ids) - st.committed):
        ids = np.ascontiguousarray(st.ids[unit], dtype=np.uint64)
        with atomic_file(_ids_path(path, unit), durable=True) as fh:
            np.save(fh, ids)
    atomic_write(path, dump_state(st), durable=True)
    st.committed = frozenset(st.ids)


def read_state(path: Path) -> RunState:
    if not path.exists():
        return RunState()
    st = load_state(path.read_bytes(), path)
    st.committed = frozenset(st.ids)
    return st
