"""Lifecycle policies (ILM on Elasticsearch, ISM on OpenSearch) and least-privilege roles.

Pure data, generated into dashboards/templates/ next to the index templates and installed
by `keytrail setup`. Only event indices expire: inventory, edges and alerts are the audit
evidence and are kept until someone decides otherwise.
"""

from __future__ import annotations

from typing import Any, Final

from dashboards.fields import DEFAULT_PREFIX, FAMILIES, index_pattern

DEFAULT_RETENTION_DAYS: Final[int] = 400  # a year of events plus a quarter for late audits
ROLES: Final[tuple[str, ...]] = ("writer", "analyst", "auditor")


def role_name(role: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}_{role}"


def _patterns(prefix: str, families: tuple[str, ...] = FAMILIES) -> list[str]:
    return [index_pattern(f, prefix) for f in families]


def ilm_policy(retention_days: int = DEFAULT_RETENTION_DAYS) -> dict[str, Any]:
    """Events: hot, read-only + force-merged after 30 days, deleted after retention."""
    return {"policy": {
        "_meta": {"managed_by": "keytrail", "description": "keytrail event indices"},
        "phases": {
            "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
            "warm": {"min_age": "30d", "actions": {
                "readonly": {}, "forcemerge": {"max_num_segments": 1},
                "set_priority": {"priority": 50}}},
            "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
        },
    }}


def ism_policy(prefix: str = DEFAULT_PREFIX,
               retention_days: int = DEFAULT_RETENTION_DAYS) -> dict[str, Any]:
    """The ISM equivalent of `ilm_policy`, attached to new event indices by ism_template."""
    return {"policy": {
        "description": "keytrail event indices: hot, read-only after 30d, deleted after "
                       f"{retention_days}d",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "warm", "conditions": {"min_index_age": "30d"}}]},
            {"name": "warm", "actions": [{"read_only": {}}, {"force_merge": {
                "max_num_segments": 1}}],
             "transitions": [{"state_name": "delete", "conditions": {
                 "min_index_age": f"{retention_days}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [index_pattern("events", prefix)],
                          "priority": 100}],
    }}


def elasticsearch_roles(prefix: str = DEFAULT_PREFIX) -> dict[str, dict[str, Any]]:
    """`PUT _security/role/<name>` bodies. Setup itself runs as an administrator."""
    alerts = [index_pattern("alerts", prefix)]
    kibana_read = ["feature_discover.read", "feature_dashboard.read", "feature_visualize.read"]
    return {
        role_name("writer", prefix): {
            "description": "keytrail pipeline: create and write keytrail indices, nothing else",
            "cluster": ["monitor"],
            "indices": [{"names": _patterns(prefix),
                         "privileges": ["create_index", "index", "view_index_metadata"]}],
            "metadata": {"managed_by": "keytrail"},
        },
        role_name("analyst", prefix): {
            "description": "SOC analyst: read everything keytrail writes, triage alerts",
            "cluster": [],
            "indices": [
                {"names": _patterns(prefix), "privileges": ["read", "view_index_metadata"]},
                # Triage = updating keytrail.alert.status on existing alerts.
                {"names": alerts, "privileges": ["write"]},
            ],
            "applications": [{"application": "kibana-.kibana", "resources": ["*"],
                              "privileges": ["feature_discover.all", "feature_dashboard.read",
                                             "feature_visualize.read"]}],
            "metadata": {"managed_by": "keytrail"},
        },
        role_name("auditor", prefix): {
            "description": "auditor: read-only inventory, graph, alerts and events",
            "cluster": [],
            "indices": [{"names": _patterns(prefix), "privileges": ["read"]}],
            "applications": [{"application": "kibana-.kibana", "resources": ["*"],
                              "privileges": kibana_read}],
            "metadata": {"managed_by": "keytrail"},
        },
    }


def opensearch_roles(prefix: str = DEFAULT_PREFIX) -> dict[str, dict[str, Any]]:
    """`PUT _plugins/_security/api/roles/<name>` bodies (security plugin)."""
    return {
        role_name("writer", prefix): {
            "description": "keytrail pipeline: create and write keytrail indices, nothing else",
            "cluster_permissions": ["cluster_monitor", "indices:data/write/bulk"],
            "index_permissions": [{"index_patterns": _patterns(prefix),
                                   "allowed_actions": ["create_index", "index",
                                                       "indices:admin/mappings/get"]}],
        },
        role_name("analyst", prefix): {
            "description": "SOC analyst: read everything keytrail writes, triage alerts",
            "cluster_permissions": ["cluster_composite_ops_ro"],
            "index_permissions": [
                {"index_patterns": _patterns(prefix), "allowed_actions": ["read",
                                                                          "indices_monitor"]},
                {"index_patterns": [index_pattern("alerts", prefix)],
                 "allowed_actions": ["index"]},
            ],
            "tenant_permissions": [{"tenant_patterns": ["global_tenant"],
                                    "allowed_actions": ["kibana_all_read"]}],
        },
        role_name("auditor", prefix): {
            "description": "auditor: read-only inventory, graph, alerts and events",
            "cluster_permissions": ["cluster_composite_ops_ro"],
            "index_permissions": [{"index_patterns": _patterns(prefix),
                                   "allowed_actions": ["read"]}],
            "tenant_permissions": [{"tenant_patterns": ["global_tenant"],
                                    "allowed_actions": ["kibana_all_read"]}],
        },
    }
