"""The run's last stage without Beam: merged partials -> inventory, graph, alerts, files.

Runs once per run over O(keys + edges + buckets) state; writes the local store (Parquet
datasets, alerts.ndjson, quarantine.ndjson, run_summary.json, graph JSON/GraphML,
report.html) deterministically.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from dashboards.report import render_report
from detectors.alerting import AlertPolicy, two_tiers
from detectors.base import (
    Bucket,
    DetectorMeta,
    InventoryDetector,
    WindowDetector,
    make_alert,
    merge_alerts,
)
from detectors.graph import (
    MAX_RESOURCES_PER_KEY,
    EdgeAccumulator,
    EdgeKey,
    ResourceAccumulator,
    edge_record,
    resource_record,
)
from detectors.inventory import KeyAccumulator, build_inventory_record
from parsers.escaping import xml_text
from pipelines.config import KeytrailConfig
from pipelines.outdir import atomic_file, atomic_write, remove_owned
from pipelines.process import QUARANTINE_DIR, QUARANTINE_SHARD, Detection
from pipelines.store import write_json, write_ndjson, write_table

SEVERITY_ORDER: Final[tuple[str, ...]] = ("critical", "high", "medium", "low")


def resolve_as_of(config: KeytrailConfig, max_ts: str | None) -> str:
    if config.as_of == "now":
        now = datetime.now(UTC)
        return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    if config.as_of:
        return config.as_of
    return max_ts or "1970-01-01T00:00:00.000Z"


def build_outputs(
    keys: dict[str, KeyAccumulator],
    edges: dict[EdgeKey, EdgeAccumulator],
    resources: dict[tuple[str, str], ResourceAccumulator],
    buckets: dict[tuple[str, str, str], Bucket],
    alerts: dict[str, dict[str, Any]],
    config: KeytrailConfig,
    detection: Detection | None,
    inventory_detectors: list[tuple[InventoryDetector, DetectorMeta]],
    as_of: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]],
           list[dict[str, Any]], list[dict[str, Any]]]:
    """Inventory, edges, resource edges, alerts and signals (DESIGN.md section 7).

    Every detection is a signal; detectors.alerting decides which become alerts.
    """
    inventory = [build_inventory_record(keys[uid], as_of, config.policies, config.compromised_keys)
                 for uid in sorted(keys)]
    edge_rows = sorted((edge_record(k, a, config.graph_window) for k, a in edges.items()),
                       key=lambda r: r["edge_id"])
    per_key: dict[str, list[tuple[str, ResourceAccumulator]]] = {}
    for (uid, res), acc in resources.items():
        per_key.setdefault(uid, []).append((res, acc))
    res_rows: list[dict[str, Any]] = []
    for uid, items in per_key.items():
        items.sort(key=lambda it: (-it[1].count, it[0]))
        res_rows.extend(resource_record(uid, r, a) for r, a in items[:MAX_RESOURCES_PER_KEY])
    res_rows.sort(key=lambda r: r["edge_id"])

    merged = dict(alerts)

    def add(alert: dict[str, Any]) -> None:
        aid = alert["keytrail.alert.id"]
        prev = merged.get(aid)
        merged[aid] = alert if prev is None else merge_alerts(prev, alert)

    if detection is not None:
        by_det: dict[str, dict[str, list[Bucket]]] = {}
        for (did, entity, _start), b in buckets.items():
            by_det.setdefault(did, {}).setdefault(entity, []).append(b)
        for wd, meta in detection.window:
            assert isinstance(wd, WindowDetector)
            for entity in sorted(by_det.get(meta.id, {})):
                series = sorted(by_det[meta.id][entity], key=lambda b: b.start)
                for finding in wd.evaluate(entity, series):
                    if detection.accept(wd, meta, finding):
                        add(make_alert(meta, finding))
        for idet, meta in inventory_detectors:
            for finding in idet.evaluate(inventory, edge_rows, as_of):
                if detection.accept(idet, meta, finding):
                    add(make_alert(meta, finding))
    signal_rows = sorted(merged.values(), key=_alert_order)
    metas = {m.id: m for _, m in [*(detection.event if detection else []),
                                  *(detection.window if detection else []),
                                  *inventory_detectors]}
    tune = (config.detectors or {}).get("alerting") or {}
    signal_rows, alert_rows = two_tiers(signal_rows, inventory, metas, AlertPolicy(**tune))
    alert_rows.sort(key=_alert_order)
    return inventory, edge_rows, res_rows, alert_rows, signal_rows


def _alert_order(a: dict[str, Any]) -> tuple[int, str, str]:
    sev = a["keytrail.alert.severity"]
    return (SEVERITY_ORDER.index(sev) if sev in SEVERITY_ORDER else 9,
            a["keytrail.alert.first_seen"], a["keytrail.alert.id"])


def finalize_state(
    st: Any,
    config: KeytrailConfig,
    detection: Detection | None,
    inventory_detectors: list[tuple[InventoryDetector, DetectorMeta]],
    inputs: list[str],
    events_dir: Path | None = None,
) -> tuple[dict[str, Any], tuple[list[dict[str, Any]], ...]]:
    """A merged RunState -> (run summary, (inventory, edges, resource edges, alerts)).

    `events_dir` is the run's event store, from which the buckets of gated window
    detectors are rebuilt for the spans that pass their gate (see pipelines.gate).
    """
    from pipelines.gate import gated_buckets

    as_of = resolve_as_of(config, st.max_ts)
    buckets = st.buckets
    if st.gated:
        buckets = {**buckets, **gated_buckets(events_dir, st.gated, detection)}
    outputs = build_outputs(st.keys, st.edges, st.resources, buckets, st.alerts, config,
                            detection, inventory_detectors, as_of)
    files = sorted(st.files.values(), key=lambda f: (f["path"], f.get("unit", "")))
    summary = summarize(files, *outputs[:4], as_of, inputs)
    summary["signals"] = dict(sorted(Counter(
        s["keytrail.signal.disposition"] for s in outputs[4]).items()))
    summary["signals_total"] = len(outputs[4])
    return summary, outputs


def graphml(edges: list[dict[str, Any]], resources: list[dict[str, Any]]) -> str:
    """Usage graph as GraphML (principals, keys, resources as nodes; windows summed)."""
    nodes: dict[str, str] = {}
    agg: dict[tuple[str, str, str], list[int]] = {}
    for e in edges:
        nodes.setdefault("p:" + e["principal"], "principal")
        nodes.setdefault("k:" + e["key_uid"], "key")
        a = agg.setdefault(("p:" + e["principal"], "k:" + e["key_uid"], e["operation"]), [0, 0])
        a[0] += e["count"]
        a[1] += e["failures"]
    for r in resources:
        nodes.setdefault("k:" + r["key_uid"], "key")
        nodes.setdefault("r:" + r["resource"], "resource")
        a = agg.setdefault(("k:" + r["key_uid"], "r:" + r["resource"], "protects"), [0, 0])
        a[0] += r["count"]
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
           '<key id="kind" for="node" attr.name="kind" attr.type="string"/>',
           '<key id="op" for="edge" attr.name="operation" attr.type="string"/>',
           '<key id="count" for="edge" attr.name="count" attr.type="long"/>',
           '<key id="failures" for="edge" attr.name="failures" attr.type="long"/>',
           '<graph id="keytrail-usage" edgedefault="directed">']
    for n in sorted(nodes):
        out.append(f'<node id="{xml_text(n)}"><data key="kind">{nodes[n]}</data></node>')
    for (src, dst, op), (count, fails) in sorted(agg.items()):
        out.append(f'<edge source="{xml_text(src)}" target="{xml_text(dst)}">'
                   f'<data key="op">{xml_text(op)}</data><data key="count">{count}</data>'
                   f'<data key="failures">{fails}</data></edge>')
    out.append("</graph></graphml>")
    return "\n".join(out) + "\n"


def merge_quarantine(out: Path, shard_names: list[str], keep_shards: bool = False) -> int:
    """Concatenate per-file quarantine shards (in input order) into quarantine.ndjson."""
    qdir = out / QUARANTINE_DIR
    n = 0
    with atomic_file(out / "quarantine.ndjson") as fh:
        for name in shard_names:
            p = qdir / f"{name}.ndjson"
            if p.exists():
                data = p.read_bytes()
                n += data.count(b"\n")
                fh.write(data)
    if not keep_shards:
        remove_owned(qdir, QUARANTINE_SHARD)
    return n


def summarize(files: list[dict[str, Any]], inventory: list[dict[str, Any]],
              edges: list[dict[str, Any]], resources: list[dict[str, Any]],
              alerts: list[dict[str, Any]], as_of: str, inputs: list[str]) -> dict[str, Any]:
    totals: dict[str, Any] = {"records_in": 0, "events": 0, "duplicates": 0,
                              "skipped": Counter(), "quarantined": Counter()}
    by_dataset: Counter[str] = Counter()
    for f in files:
        totals["records_in"] += f["records_in"]
        totals["events"] += f["events"]
        totals["duplicates"] += f.get("duplicates", 0)
        totals["skipped"].update(f["skipped"])
        totals["quarantined"].update(f["quarantined"])
        by_dataset[f["dataset"] or "unrecognized"] += f["events"]
    totals["skipped"] = dict(sorted(totals["skipped"].items()))
    totals["quarantined"] = dict(sorted(totals["quarantined"].items()))
    states = Counter(r["state"] for r in inventory)
    sev = Counter(a["keytrail.alert.severity"] for a in alerts)
    return {
        "inputs": inputs,
        "as_of": as_of,
        "files": files,
        "totals": totals,
        "events_by_dataset": dict(sorted(by_dataset.items())),
        "keys": len(inventory),
        "keys_by_state": dict(sorted(states.items())),
        "keys_overdue": sum(1 for r in inventory if r["rotation"]["overdue_days"] > 0),
        "edges": len(edges),
        "resource_edges": len(resources),
        "alerts": {s: sev.get(s, 0) for s in SEVERITY_ORDER},
        "alerts_total": len(alerts),
        "accounting_ok": all(
            f["records_in"] == f["events"] + f.get("duplicates", 0) + sum(f["skipped"].values())
            + sum(f["quarantined"].values()) for f in files),
    }


def write_signals(out: Path, signals: list[dict[str, Any]]) -> None:
    """Every detection, alert or not, with its disposition (signals.parquet / .ndjson)."""
    write_table(out / "signals.parquet", signals,
                nested=("threat.technique", "keytrail.alert.evidence", "keytrail.alert.details"))
    write_ndjson(out / "signals.ndjson", signals)


def write_local_store(out: Path, summary: dict[str, Any], inventory: list[dict[str, Any]],
                      edges: list[dict[str, Any]], resources: list[dict[str, Any]],
                      alerts: list[dict[str, Any]],
                      signals: list[dict[str, Any]] | None = None) -> None:
    if signals is not None:
        write_signals(out, signals)
    write_table(out / "inventory.parquet", inventory,
                nested=("transitions", "rotation", "last_used", "usage_counts"))
    write_json(out / "inventory.json", inventory)
    write_table(out / "edges.parquet", edges)
    write_table(out / "resource_edges.parquet", resources)
    write_table(out / "alerts.parquet", alerts,
                nested=("threat.technique", "keytrail.alert.evidence", "keytrail.alert.details",
                        "keytrail.alert.signals"))
    write_ndjson(out / "alerts.ndjson", alerts)
    write_json(out / "graph.json", {"edges": edges, "resource_edges": resources})
    atomic_write(out / "graph.graphml", graphml(edges, resources))
    write_json(out / "run_summary.json", summary)
    html = render_report(summary, inventory, edges, resources, alerts, signals)
    atomic_write(out / "report.html", html)
