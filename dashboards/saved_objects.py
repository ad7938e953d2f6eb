"""Kibana / OpenSearch Dashboards saved objects, as data: data views, classic
visualizations (visState JSON), saved searches and dashboards.

Classic `visualization` objects import into Kibana 8/9 (migrated on import) and into
OpenSearch Dashboards unchanged, so one spec serves both; each dashboard file carries the
data views it needs and imports on its own. Every field a panel uses is checked against
the index templates by tests/test_sink_dashboards.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from dashboards.fields import DEFAULT_PREFIX, index_pattern

MIGRATION: Final[dict[str, str]] = {
    "index-pattern": "7.6.0", "visualization": "7.10.0", "search": "7.9.3",
    "dashboard": "7.9.3",
}
DATA_VIEWS: Final[dict[str, tuple[str, str | None]]] = {
    # family -> (saved object id, time field); inventory is a snapshot: no time filter.
    "events": ("keytrail-events", "@timestamp"),
    "inventory": ("keytrail-inventory", None),
    "edges": ("keytrail-edges", "@timestamp"),
    "alerts": ("keytrail-alerts", "@timestamp"),
}
INDEX_REF: Final[str] = "kibanaSavedObjectMeta.searchSourceJSON.index"


def _j(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# --- aggregations -----------------------------------------------------------------------

def count() -> dict[str, Any]:
    return {"type": "count", "schema": "metric", "params": {}}


def metric(kind: str, fld: str, label: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"field": fld}
    if label:
        p["customLabel"] = label
    return {"type": kind, "schema": "metric", "params": p}


def terms(fld: str, schema: str = "bucket", size: int = 10, label: str | None = None,
          order_by: str = "1") -> dict[str, Any]:
    p: dict[str, Any] = {"field": fld, "size": size, "order": "desc", "orderBy": order_by,
                         "otherBucket": False, "missingBucket": False}
    if label:
        p["customLabel"] = label
    return {"type": "terms", "schema": schema, "params": p}


def date_histogram(fld: str = "@timestamp") -> dict[str, Any]:
    return {"type": "date_histogram", "schema": "segment",
            "params": {"field": fld, "interval": "auto", "min_doc_count": 1,
                       "extended_bounds": {}, "drop_partials": False}}


def _numbered(aggs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": str(i), "enabled": True, **a} for i, a in enumerate(aggs, 1)]


# --- visualization params ---------------------------------------------------------------

def _xy_params(kind: str) -> dict[str, Any]:
    return {
        "type": kind, "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom",
                          "show": True, "style": {}, "scale": {"type": "linear"},
                          "labels": {"show": True, "filter": True, "truncate": 100},
                          "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value",
                       "position": "left", "show": True, "style": {},
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": "Count"}}],
        "seriesParams": [{"show": True, "type": kind, "mode": "stacked",
                          "data": {"label": "Count", "id": "1"}, "valueAxis": "ValueAxis-1",
                          "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "showCircles": True}],
        "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [],
        "addTimeMarker": False,
    }


VIS_PARAMS: Final[dict[str, dict[str, Any]]] = {
    "pie": {"type": "pie", "addTooltip": True, "addLegend": True, "legendPosition": "right",
            "isDonut": True, "labels": {"show": False, "values": True, "last_level": True,
                                        "truncate": 100}},
    "table": {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False,
              "sort": {"columnIndex": None, "direction": None}, "showTotal": False,
              "totalFunc": "sum", "percentageCol": ""},
    "metric": {"addTooltip": True, "addLegend": False, "type": "metric",
               "metric": {"percentageMode": False, "useRanges": False,
                          "colorSchema": "Green to Red", "metricColorMode": "None",
                          "colorsRange": [{"from": 0, "to": 10000}], "labels": {"show": True},
                          "invertColors": False,
                          "style": {"bgFill": "#000", "bgColor": False, "labelColor": False,
                                    "subText": "", "fontSize": 60}}},
    "histogram": _xy_params("histogram"),
    "line": _xy_params("line"),
}


@dataclass(frozen=True)
class Panel:
    """A classic visualization (or a saved search when `columns` is set) on one family."""

    id: str
    title: str
    family: str
    vis: str  # pie | table | metric | histogram | line | search
    aggs: tuple[dict[str, Any], ...] = ()
    query: str = ""
    columns: tuple[str, ...] = ()
    sort: tuple[str, str] | None = None
    width: int = 24
    height: int = 12


@dataclass(frozen=True)
class Dashboard:
    id: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def data_view(family: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    so_id, time_field = DATA_VIEWS[family]
    attrs: dict[str, Any] = {"title": index_pattern(family, prefix)}
    if time_field:
        attrs["timeFieldName"] = time_field
    return {"type": "index-pattern", "id": so_id, "attributes": attrs, "references": [],
            "migrationVersion": {"index-pattern": MIGRATION["index-pattern"]}}


def _search_source(p: Panel) -> str:
    return _j({"query": {"query": p.query, "language": "kuery"}, "filter": [],
               "indexRefName": INDEX_REF})


def panel_object(p: Panel) -> dict[str, Any]:
    ref = [{"name": INDEX_REF, "type": "index-pattern", "id": DATA_VIEWS[p.family][0]}]
    meta = {"searchSourceJSON": _search_source(p)}
    if p.vis == "search":
        sort = [list(p.sort)] if p.sort else []
        return {"type": "search", "id": p.id, "references": ref,
                "migrationVersion": {"search": MIGRATION["search"]},
                "attributes": {"title": p.title, "description": "", "columns": list(p.columns),
                               "sort": sort, "version": 1, "kibanaSavedObjectMeta": meta}}
    vis_state = {"title": p.title, "type": "table" if p.vis == "table" else p.vis,
                 "params": VIS_PARAMS[p.vis], "aggs": _numbered(list(p.aggs))}
    return {"type": "visualization", "id": p.id, "references": ref,
            "migrationVersion": {"visualization": MIGRATION["visualization"]},
            "attributes": {"title": p.title, "description": "", "visState": _j(vis_state),
                           "uiStateJSON": "{}", "version": 1, "kibanaSavedObjectMeta": meta}}


def dashboard_object(d: Dashboard) -> dict[str, Any]:
    panels = []
    refs = []
    x = y = 0
    row_h = 0
    for i, p in enumerate(d.panels):
        if x + p.width > 48:
            x, y, row_h = 0, y + row_h, 0
        panels.append({"version": "7.10.0", "type": "search" if p.vis == "search" else
                       "visualization", "gridData": {"x": x, "y": y, "w": p.width,
                                                     "h": p.height, "i": str(i + 1)},
                       "panelIndex": str(i + 1), "embeddableConfig": {},
                       "panelRefName": f"panel_{i}"})
        refs.append({"name": f"panel_{i}", "type": "search" if p.vis == "search" else
                     "visualization", "id": p.id})
        x += p.width
        row_h = max(row_h, p.height)
    return {"type": "dashboard", "id": d.id, "references": refs,
            "migrationVersion": {"dashboard": MIGRATION["dashboard"]},
            "attributes": {"title": d.title, "description": d.description, "version": 1,
                           "timeRestore": False, "hits": 0,
                           "panelsJSON": _j(panels),
                           "optionsJSON": _j({"useMargins": True, "hidePanelTitles": False}),
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _j(
                               {"query": {"query": "", "language": "kuery"}, "filter": []})}}}


def dashboard_objects(d: Dashboard, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Data views first, then panels, then the dashboard (import resolves in order)."""
    families = sorted({p.family for p in d.panels})
    return ([data_view(f, prefix) for f in families] + [panel_object(p) for p in d.panels]
            + [dashboard_object(d)])


# --- the dashboards ---------------------------------------------------------------------

UID = "keytrail.key.uid"
ROT = "keytrail.inventory.rotation"
OVERDUE_Q = f"{ROT}.overdue_days > 0"
NEVER_ROTATED_Q = (f"{ROT}.rotation_count : 0 and not {ROT}.status : not_evaluated and not "
                   "keytrail.inventory.state : destroyed")
DISABLED_ELIGIBLE_Q = f"{ROT}.eligible : true and {ROT}.enabled : false"

DASHBOARDS: Final[tuple[Dashboard, ...]] = (
    Dashboard("keytrail-inventory-lifecycle", "keytrail: key inventory and lifecycle",
              "Every key the logs show, its NIST SP 800-57 state and how it got there.", (
        Panel("kt-inv-total", "Keys", "inventory", "metric", (count(),), width=12, height=8),
        Panel("kt-inv-by-state", "Keys by lifecycle state", "inventory", "pie",
              (count(), terms("keytrail.inventory.state", "segment")), width=18, height=8),
        Panel("kt-inv-by-substate", "Sub-states", "inventory", "table",
              (count(), terms("keytrail.inventory.substate")), width=18, height=8),
        Panel("kt-inv-provider-state", "Keys by provider and state", "inventory", "table",
              (count(), terms("keytrail.key.provider"), terms("keytrail.inventory.state"))),
        Panel("kt-inv-by-kind", "Material by kind and purpose", "inventory", "table",
              (count(), terms("keytrail.key.kind"), terms("keytrail.key.purpose"))),
        Panel("kt-inv-keys", "Key list", "inventory", "search", query="",
              columns=(UID, "keytrail.key.provider", "keytrail.key.alias",
                       "keytrail.inventory.state", "keytrail.inventory.substate",
                       "keytrail.inventory.created_at", "keytrail.inventory.last_seen"),
              sort=(UID, "asc"), width=48, height=16),
    )),
    Dashboard("keytrail-rotation-compliance", "keytrail: rotation compliance (CEK-21)",
              "Keys past their cryptoperiod, never rotated, or with rotation disabled where "
              "the provider could rotate them.", (
        Panel("kt-rot-overdue-count", "Keys past their cryptoperiod", "inventory", "metric",
              (count(),), query=OVERDUE_Q, width=12, height=8),
        Panel("kt-rot-status", "Rotation status", "inventory", "pie",
              (count(), terms(f"{ROT}.status", "segment")), width=18, height=8),
        Panel("kt-rot-overdue-by-provider", "Overdue keys by provider", "inventory",
              "histogram", (count(), terms("keytrail.key.provider", "segment")),
              query=OVERDUE_Q, width=18, height=8),
        Panel("kt-rot-overdue-keys", "Keys past their cryptoperiod", "inventory", "table",
              (metric("max", f"{ROT}.overdue_days", "days overdue"), terms(UID, size=50,
               order_by="1"), terms(f"{ROT}.policy")), query=OVERDUE_Q),
        Panel("kt-rot-never", "Never rotated", "inventory", "table",
              (count(), terms(UID, size=50), terms("keytrail.key.provider")),
              query=NEVER_ROTATED_Q),
        Panel("kt-rot-disabled-eligible", "Rotation disabled on eligible keys", "inventory",
              "table", (count(), terms(UID, size=50), terms(f"{ROT}.eligibility_reason")),
              query=DISABLED_ELIGIBLE_Q),
        Panel("kt-rot-due", "Next rotation due", "inventory", "table",
              (metric("min", f"{ROT}.next_due", "next due"), terms(UID, size=50,
               order_by="1")), query=f"{ROT}.next_due : *"),
    )),
    Dashboard("keytrail-usage-graph", "keytrail: usage graph",
              "Who uses which key: top principals per key, new edges over time, "
              "cross-account use, what keys protect.", (
        Panel("kt-graph-top-principals", "Top principals per key", "edges", "table",
              (metric("sum", "keytrail.edge.count", "operations"), terms(UID, size=20),
               terms("user.id", size=5)), query="keytrail.edge.type : principal_key"),
        Panel("kt-graph-edges-over-time", "Usage edges per window", "edges", "histogram",
              (count(), date_histogram(), terms("keytrail.operation", "group", size=8)),
              query="keytrail.edge.type : principal_key"),
        Panel("kt-graph-principals-over-time", "Distinct principals over time", "edges", "line",
              (metric("cardinality", "user.id", "principals"), date_histogram()),
              query="keytrail.edge.type : principal_key"),
        Panel("kt-graph-cross-account", "Cross-account use", "edges", "table",
              (metric("sum", "keytrail.edge.count", "operations"),
               terms("keytrail.principal.account"), terms("keytrail.key.account"),
               terms("user.id")), query="keytrail.edge.cross_account : true"),
        Panel("kt-graph-failures", "Failed use by principal and key", "edges", "table",
              (metric("sum", "keytrail.edge.failures", "failures"), terms("user.id"),
               terms(UID)), query="keytrail.edge.failures > 0"),
        Panel("kt-graph-resources", "What keys protect", "edges", "table",
              (metric("sum", "keytrail.edge.count", "operations"), terms(UID),
               terms("keytrail.resource")), query="keytrail.edge.type : key_resource"),
    )),
    Dashboard("keytrail-alerts-triage", "keytrail: alerts triage",
              "Alerts by severity, rule, key and principal, over time.", (
        Panel("kt-alerts-severity", "Alerts by severity", "alerts", "pie",
              (count(), terms("keytrail.alert.severity", "segment")), width=16, height=10),
        Panel("kt-alerts-timeline", "Alert timeline", "alerts", "histogram",
              (count(), date_histogram(), terms("keytrail.alert.severity", "group")),
              width=32, height=10),
        Panel("kt-alerts-by-rule", "By rule", "alerts", "table",
              (count(), terms("rule.id", size=20), terms("rule.name", size=1),
               ), width=16),
        Panel("kt-alerts-by-key", "By key", "alerts", "table",
              (metric("max", "keytrail.alert.risk_score", "max risk"), terms(UID, size=20)),
              width=16),
        Panel("kt-alerts-by-principal", "By principal", "alerts", "table",
              (metric("max", "keytrail.alert.risk_score", "max risk"),
               terms("user.id", size=20)), width=16),
        Panel("kt-alerts-open", "Open alerts", "alerts", "search",
              query="keytrail.alert.status : open",
              columns=("keytrail.alert.severity", "rule.name", UID, "user.id",
                       "keytrail.alert.event_count", "keytrail.alert.explanation"),
              sort=("@timestamp", "desc"), width=48, height=16),
    )),
    Dashboard("keytrail-vault-audit", "keytrail: HashiCorp Vault audit",
              "Vault transit/KV/PKI activity from the audit device.", (
        Panel("kt-vault-ops-time", "Vault operations over time", "events", "histogram",
              (count(), date_histogram(), terms("keytrail.operation", "group", size=8)),
              query="event.dataset : hashicorp_vault.audit", width=48, height=10),
        Panel("kt-vault-principals", "Principals and operations", "events", "table",
              (count(), terms("user.id"), terms("keytrail.operation")),
              query="event.dataset : hashicorp_vault.audit"),
        Panel("kt-vault-mounts", "Mounts and paths", "events", "table",
              (count(), terms("hashicorp_vault.mount_point"), terms("hashicorp_vault.path")),
              query="event.dataset : hashicorp_vault.audit"),
        Panel("kt-vault-outcome", "Outcome", "events", "pie",
              (count(), terms("event.outcome", "segment")),
              query="event.dataset : hashicorp_vault.audit", width=16),
        Panel("kt-vault-root", "Root token use", "events", "table",
              (count(), terms("user.id"), terms("source.ip")),
              query="event.dataset : hashicorp_vault.audit and hashicorp_vault.root_token : "
                    "true", width=32),
    )),
    Dashboard("keytrail-hsm-activity", "keytrail: HSM activity",
              "CloudHSM, Luna and nShield audit logs: who did what on which HSM.", (
        Panel("kt-hsm-time", "HSM activity over time", "events", "histogram",
              (count(), date_histogram(), terms("event.dataset", "group")),
              query="event.dataset : hsm.*", width=48, height=10),
        Panel("kt-hsm-devices", "HSMs and partitions", "events", "table",
              (count(), terms("hsm.serial"), terms("hsm.partition")),
              query="event.dataset : hsm.*"),
        Panel("kt-hsm-actions", "Actions and outcomes", "events", "table",
              (count(), terms("event.action", size=20), terms("event.outcome")),
              query="event.dataset : hsm.*"),
        Panel("kt-hsm-users", "HSM users", "events", "table",
              (count(), terms("user.name"), terms("hsm.user_type")),
              query="event.dataset : hsm.*"),
        Panel("kt-hsm-failures", "Failures", "events", "table",
              (count(), terms("event.action"), terms("error.code")),
              query="event.dataset : hsm.* and event.outcome : failure"),
    )),
    Dashboard("keytrail-keyvault-activity", "keytrail: Azure Key Vault activity",
              "Key Vault and Managed HSM data- and management-plane activity.", (
        Panel("kt-akv-time", "Key Vault operations over time", "events", "histogram",
              (count(), date_histogram(), terms("keytrail.operation", "group", size=8)),
              query="event.dataset : azure.keyvault", width=48, height=10),
        Panel("kt-akv-vaults", "Vaults and keys", "events", "table",
              (count(), terms("keytrail.key.vault"), terms("keytrail.key.name")),
              query="event.dataset : azure.keyvault"),
        Panel("kt-akv-operations", "Operations and HTTP status", "events", "table",
              (count(), terms("azure.keyvault.operation_name", size=20),
               terms("azure.keyvault.http_status_code")),
              query="event.dataset : azure.keyvault"),
        Panel("kt-akv-denied", "Failed requests by principal", "events", "table",
              (count(), terms("user.id"), terms("source.ip")),
              query="event.dataset : azure.keyvault and event.outcome : failure"),
        Panel("kt-akv-apps", "Client applications", "events", "table",
              (count(), terms("azure.keyvault.app_id"), terms("user_agent.original")),
              query="event.dataset : azure.keyvault"),
    )),
)


def file_name(d: Dashboard) -> str:
    return d.id.removeprefix("keytrail-").replace("-", "_") + ".ndjson"
