"""Field models of the four index families and the mappings generated from them.

Events come from `parsers.schema.FIELDS` + `EXTRA_FIELDS`; the derived records (inventory,
usage-graph edges, alerts) are described here, record key -> ECS / `keytrail.*` name, so
the index templates, the field reference and the sink's document layer share one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from parsers.schema import EXTRA_FIELDS, FIELDS, OPERATION_CLASSES, OPERATIONS

FAMILIES: Final[tuple[str, ...]] = ("events", "inventory", "edges", "alerts")
DEFAULT_PREFIX: Final[str] = "keytrail"
# Vendor namespaces: the listed EXTRA_FIELDS are mapped; anything else under them is kept
# in _source but not indexed, so a new vendor attribute never changes the mapping.
VENDOR_NAMESPACES: Final[tuple[str, ...]] = tuple(sorted({
    ".".join(name.split(".")[:2]) if name.startswith(("aws.", "azure.")) else name.split(".")[0]
    for name in EXTRA_FIELDS}))


@dataclass(frozen=True, slots=True)
class RecordField:
    """One field of a derived record: record key, document field name, type, meaning.

    `children` describe a nested mapping (a dict, or a list of dicts when `array`), whose
    keys are the record's own sub-keys. `open_children` marks dicts whose keys come from a
    vocabulary: unknown keys are stored but not indexed.
    """

    key: str
    name: str
    type: str  # keyword | text | date | long | double | ip | boolean | object | stored
    description: str
    array: bool = False
    children: tuple[RecordField, ...] = ()
    open_children: bool = False


def _f(key: str, name: str, type_: str, desc: str, **kw: Any) -> RecordField:
    return RecordField(key, name, type_, desc, **kw)


TRANSITION_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("at", "at", "date", "When the transition happened."),
    _f("from", "from", "keyword", "State before."),
    _f("to", "to", "keyword", "State after."),
    _f("substate", "substate", "keyword", "Sub-state after (e.g. pending_deletion)."),
    _f("operation", "operation", "keyword", "keytrail.operation that caused it."),
    _f("action", "action", "keyword", "Vendor action that caused it."),
    _f("event_id", "event_id", "keyword", "event.id of the causing event."),
    _f("by", "by", "keyword", "Principal (user.id) that caused it."),
    _f("log_file_path", "log_file_path", "keyword", "Source file of the causing event."),
    _f("log_offset", "log_offset", "long", "Offset of the causing record."),
)

ROTATION_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("eligible", "eligible", "boolean", "The provider can rotate this key automatically."),
    _f("eligibility_reason", "eligibility_reason", "keyword", "Why (not) eligible."),
    _f("enabled", "enabled", "boolean", "Automatic rotation enabled, as last observed "
       "(absent: never observed)."),
    _f("period_days", "period_days", "long", "Rotation period the logs state."),
    _f("last_rotated_at", "last_rotated_at", "date", "Last observed rotation."),
    _f("rotation_count", "rotation_count", "long", "Observed rotations."),
    _f("observed_interval_days", "observed_interval_days", "double",
       "Median days between creation/rotations."),
    _f("policy", "policy", "keyword", "Cryptoperiod policy applied."),
    _f("policy_source", "policy_source", "keyword", "Where the policy comes from (NIST "
       "SP 800-57 table, provider default, config)."),
    _f("cryptoperiod_days", "cryptoperiod_days", "long", "Cryptoperiod of the policy."),
    _f("baseline", "baseline", "date", "Start of the current cryptoperiod (creation or last "
       "rotation)."),
    _f("next_due", "next_due", "date", "When the next rotation is due."),
    _f("overdue_days", "overdue_days", "long", "Days past the cryptoperiod (0: within)."),
    _f("status", "status", "keyword", "within_cryptoperiod | overdue | overdue_lower_bound | "
       "not_evaluated."),
)

INVENTORY_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("inventory_id", "keytrail.inventory.id", "keyword", "Deterministic id of the record "
       "(the document _id)."),
    _f("uid", "keytrail.key.uid", "keyword", "Canonical key identity."),
    _f("provider", "keytrail.key.provider", "keyword", "Key provider."),
    _f("kind", "keytrail.key.kind", "keyword", "key | secret | certificate."),
    _f("account", "keytrail.key.account", "keyword", "Account / subscription owning the key."),
    _f("region", "keytrail.key.region", "keyword", "Region of the key."),
    _f("vault", "keytrail.key.vault", "keyword", "Vault, mount, partition or cluster."),
    _f("name", "keytrail.key.name", "keyword", "Key name or label."),
    _f("aliases", "keytrail.key.alias", "keyword", "Every alias observed.", array=True),
    _f("spec", "keytrail.key.spec", "keyword", "Key spec / type."),
    _f("usage", "keytrail.key.usage", "keyword", "Key usage."),
    _f("origin", "keytrail.key.origin", "keyword", "Key material origin."),
    _f("key_store", "keytrail.key.store", "keyword", "Custom key store id."),
    _f("purpose", "keytrail.key.purpose", "keyword", "encryption | signing | mac | wrapping | "
       "derivation | secret (chooses the cryptoperiod)."),
    _f("expires_at", "keytrail.key.expires_at", "date", "Expiry the logs state."),
    _f("created_at", "keytrail.inventory.created_at", "date", "Observed creation."),
    _f("created_by", "keytrail.inventory.created_by", "keyword", "Principal that created it."),
    _f("creation_observed", "keytrail.inventory.creation_observed", "boolean",
       "The creation event is in the logs (else the state is inferred from use)."),
    _f("state", "keytrail.inventory.state", "keyword", "NIST SP 800-57 state: pre-activation | "
       "active | suspended | deactivated | compromised | destroyed."),
    _f("substate", "keytrail.inventory.substate", "keyword", "Sub-state, e.g. "
       "pending_deletion, disabled, inferred_from_use."),
    _f("key_class", "keytrail.inventory.key_class", "keyword", "ephemeral (a session key "
       "created and destroyed by one identity within a day) | long_lived."),
    _f("lifetime_seconds", "keytrail.inventory.lifetime_seconds", "double", "Creation to "
       "destruction, when both are observed."),
    _f("transitions", "keytrail.inventory.transitions", "object", "Full state history with "
       "the event that caused each transition.", array=True, children=TRANSITION_FIELDS),
    _f("history_truncated", "keytrail.inventory.history_truncated", "boolean",
       "More lifecycle events than kept per key: the history holds the earliest 100 and the "
       "latest 400 (all events stay in the event store)."),
    _f("rotation", "keytrail.inventory.rotation", "object", "Rotation and cryptoperiod "
       "evaluation.", children=ROTATION_FIELDS),
    _f("last_used", "keytrail.inventory.last_used", "object", "Last successful use per "
       "operation class.", open_children=True, children=tuple(
           _f(c, c, "date", f"Last successful {c} operation.") for c in OPERATION_CLASSES)),
    _f("usage_counts", "keytrail.inventory.usage_counts", "object", "Events per operation.",
       open_children=True, children=tuple(
           _f(o, o, "long", f"{o} events.") for o in sorted(OPERATIONS))),
    _f("failures", "keytrail.inventory.failures", "long", "Failed operations on the key."),
    _f("principals", "keytrail.inventory.principals", "keyword", "Distinct principals that "
       "used the key (bounded).", array=True),
    _f("principal_count", "keytrail.inventory.principal_count", "long",
       "Number of distinct principals."),
    _f("admins", "keytrail.inventory.admins", "keyword", "Principals that changed its "
       "lifecycle or policy.", array=True),
    _f("first_seen", "keytrail.inventory.first_seen", "date", "First event on the key."),
    _f("last_seen", "keytrail.inventory.last_seen", "date", "Last event on the key."),
    _f("datasets", "keytrail.inventory.datasets", "keyword", "Log datasets that mention the key.",
       array=True),
    _f("evidence_event_ids", "keytrail.inventory.evidence_event_ids", "keyword",
       "Bounded sample of event ids behind the record.", array=True),
    _f("as_of", "keytrail.inventory.as_of", "date", "Time the record was evaluated at."),
)

EDGE_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("edge_id", "keytrail.edge.id", "keyword", "Deterministic edge id (the document _id)."),
    _f("edge_type", "keytrail.edge.type", "keyword", "principal_key | key_resource."),
    _f("window_start", "@timestamp", "date", "Start of the aggregation window (first_seen for "
       "key -> resource edges)."),
    _f("principal", "user.id", "keyword", "Principal."),
    _f("principal_name", "user.name", "keyword", "Principal display name."),
    _f("principal_type", "keytrail.principal.type", "keyword", "Principal type."),
    _f("principal_account", "keytrail.principal.account", "keyword", "Principal's account."),
    _f("key_uid", "keytrail.key.uid", "keyword", "Key."),
    _f("key_account", "keytrail.key.account", "keyword", "Key's account."),
    _f("cross_account", "keytrail.edge.cross_account", "boolean", "Principal and key are in "
       "different accounts."),
    _f("operation", "keytrail.operation", "keyword", "Operation."),
    _f("window", "keytrail.edge.window", "keyword", "Window width (1h | 1d)."),
    _f("count", "keytrail.edge.count", "long", "Events in the window."),
    _f("failures", "keytrail.edge.failures", "long", "Failed events in the window."),
    _f("first_seen", "keytrail.edge.first_seen", "date", "First event."),
    _f("last_seen", "keytrail.edge.last_seen", "date", "Last event."),
    _f("source_ips", "source.ip", "ip", "Client addresses seen.", array=True),
    _f("dataset", "event.dataset", "keyword", "Log dataset."),
    _f("resource", "keytrail.resource", "keyword", "What the key protected (key_resource "
       "edges)."),
)

EVIDENCE_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("event.id", "event.id", "keyword", "Evidence event id."),
    _f("@timestamp", "@timestamp", "date", "Evidence event time."),
    _f("log.file.path", "log.file.path", "keyword", "Evidence source file."),
    _f("log.offset", "log.offset", "long", "Evidence record offset."),
)
SIGNAL_REF_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("id", "id", "keyword", "Signal id (keytrail.alert.id of the signal)."),
    _f("rule.id", "rule.id", "keyword", "Rule of the signal."),
    _f("risk_score", "risk_score", "long", "Risk score of the signal."),
    _f("disposition", "disposition", "keyword", "alert | exception | ephemeral_key | ticketed | "
       "routine | low_risk."),
    _f("first_seen", "first_seen", "date", "First event of the signal."),
)
TECHNIQUE_FIELDS: Final[tuple[RecordField, ...]] = (
    _f("id", "id", "keyword", "ATT&CK technique id."),
    _f("name", "name", "keyword", "ATT&CK technique name."),
    _f("tactic", "tactic", "keyword", "ATT&CK tactic."),
    _f("reference", "reference", "keyword", "ATT&CK URL."),
)

# Alerts are produced with ECS names already (detectors.base.make_alert): key == name.
ALERT_FIELDS: Final[tuple[RecordField, ...]] = tuple(
    _f(name, name, t, d, **kw) for name, t, d, kw in (
        ("keytrail.alert.id", "keyword", "Deterministic alert id: rule + entity + window "
         "(the document _id).", {}),
        ("@timestamp", "date", "Last event of the alert.", {}),
        ("rule.id", "keyword", "Detector id.", {}),
        ("rule.name", "keyword", "Detector title.", {}),
        ("rule.version", "keyword", "Detector version.", {}),
        ("rule.description", "text", "Detector description.", {}),
        ("event.severity_label", "keyword", "Severity (low | medium | high | critical).", {}),
        ("keytrail.alert.severity", "keyword", "Severity (low | medium | high | critical).", {}),
        ("keytrail.alert.risk_score", "long", "Risk score 0-100.", {}),
        ("threat.technique", "object", "MITRE ATT&CK techniques.",
         {"array": True, "children": TECHNIQUE_FIELDS, "open_children": True}),
        ("keytrail.alert.entity", "keyword", "What the alert is about (key, principal, "
         "principal|key).", {}),
        ("keytrail.key.uid", "keyword", "Key the alert is about.", {}),
        ("user.id", "keyword", "Principal the alert is about.", {}),
        ("keytrail.alert.first_seen", "date", "First event.", {}),
        ("keytrail.alert.last_seen", "date", "Last event.", {}),
        ("keytrail.alert.window_start", "date", "Deduplication window start.", {}),
        ("keytrail.alert.event_count", "long", "Events behind the alert.", {}),
        ("keytrail.alert.evidence", "object", "Evidence events with provenance (bounded).",
         {"array": True, "children": EVIDENCE_FIELDS}),
        ("keytrail.alert.explanation", "text", "Human explanation.", {}),
        ("keytrail.alert.status", "keyword", "open | acknowledged | closed (analysts own it "
         "once the alert exists).", {}),
        ("keytrail.alert.runbook", "text", "What to do.", {}),
        ("keytrail.alert.details", "stored", "Detector-specific details (stored, not "
         "indexed).", {}),
        ("keytrail.alert.rules", "keyword", "Rules behind the alert (several for a "
         "keytrail_incident).", {"array": True}),
        ("keytrail.alert.signals", "object", "Every contributing or related signal of the "
         "same identity and day.", {"array": True, "children": SIGNAL_REF_FIELDS}),
        ("keytrail.alert.why", "text", "Why this detection is an alert and not only a "
         "signal.", {}),
        ("keytrail.alert.suppress_with", "text", "The config exception that would keep it a "
         "signal.", {}),
    ))

RECORD_FIELDS: Final[dict[str, tuple[RecordField, ...]]] = {
    "inventory": INVENTORY_FIELDS, "edges": EDGE_FIELDS, "alerts": ALERT_FIELDS,
}


def event_fields() -> tuple[RecordField, ...]:
    """The event model (schema.FIELDS + EXTRA_FIELDS) as RecordFields, key == name."""
    out = [RecordField(f.name, f.name, f.type, f.description, array=f.array)
           for f in FIELDS if f.attr != "extra"]
    out += [RecordField(n, n, t, d) for n, (t, d) in sorted(EXTRA_FIELDS.items())]
    return tuple(out)


def family_fields(family: str) -> tuple[RecordField, ...]:
    return event_fields() if family == "events" else RECORD_FIELDS[family]


# --- mappings ---------------------------------------------------------------------------

def leaf_mapping(f: RecordField) -> dict[str, Any]:
    """ECS-aligned mapping of one leaf field."""
    if f.name == "event.original":
        # ECS: kept for reference, never searched.
        return {"type": "keyword", "index": False, "doc_values": False}
    if f.type == "keyword":
        return {"type": "keyword", "ignore_above": 1024}
    if f.type == "stored":
        return {"type": "object", "enabled": False}
    if f.type in ("text", "date", "long", "double", "ip", "boolean"):
        return {"type": f.type}
    raise ValueError(f"{f.name}: no mapping for type {f.type!r}")


def _insert(props: dict[str, Any], name: str, mapping: dict[str, Any]) -> None:
    parts = [name] if name == "@timestamp" else name.split(".")
    node = props
    for p in parts[:-1]:
        obj = node.setdefault(p, {"properties": {}})
        node = obj["properties"]
    if parts[-1] in node and "properties" in node[parts[-1]]:
        raise ValueError(f"{name}: field is both an object and a leaf")
    node[parts[-1]] = mapping


def _node(props: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = {"properties": props}
    for p in dotted.split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(p)
    return node


def field_mapping(f: RecordField) -> dict[str, Any]:
    if not f.children:
        return leaf_mapping(f)
    props: dict[str, Any] = {}
    for c in f.children:
        _insert(props, c.name, field_mapping(c))
    m: dict[str, Any] = {"properties": props}
    if f.open_children:
        m["dynamic"] = False
    return m


def family_mapping(family: str) -> dict[str, Any]:
    """`mappings` of the family's index template.

    events: `dynamic: false` — an audit record is never rejected for an attribute the model
    does not know yet; it stays in _source, unindexed, and the mapping never changes.
    inventory / edges / alerts: `dynamic: strict` — keytrail writes these itself, so an
    unknown field is a keytrail bug and the engine rejects it (the document is dead-lettered).
    """
    props: dict[str, Any] = {}
    for f in family_fields(family):
        _insert(props, f.name, field_mapping(f))
    if family == "events":
        for ns in VENDOR_NAMESPACES:
            node = _node(props, ns)
            assert node is not None, ns
            node["dynamic"] = False
    return {
        "dynamic": False if family == "events" else "strict",
        "date_detection": False,
        "numeric_detection": False,
        "properties": _sorted(props),
    }


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    return obj


def index_name(family: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Write target of a family (events add a -YYYY.MM suffix per document)."""
    return f"{prefix}-{family}"


def index_pattern(family: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-{family}-*" if family == "events" else f"{prefix}-{family}"


def index_template(family: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """Composable index template body (`PUT _index_template/<prefix>-<family>`), engine-neutral."""
    return {
        "index_patterns": [index_pattern(family, prefix)],
        "priority": 200,
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": 1,
                    "auto_expand_replicas": "0-1",
                    "mapping": {"total_fields": {"limit": 2000}},
                },
            },
            "mappings": family_mapping(family),
        },
        "_meta": {
            "managed_by": "keytrail",
            "family": family,
            "description": f"keytrail {family}; generated by dashboards/generate.py from the "
                           "schema model, do not edit",
        },
    }


def mapped_fields(family: str) -> dict[str, dict[str, Any]]:
    """Every field path of the family's mapping -> its leaf mapping (objects excluded)."""
    out: dict[str, dict[str, Any]] = {}

    def walk(props: dict[str, Any], prefix: str) -> None:
        for k, v in props.items():
            path = f"{prefix}{k}"
            if "properties" in v:
                walk(v["properties"], path + ".")
            else:
                out[path] = v
    walk(family_mapping(family)["properties"], "")
    return out


AGGREGATABLE: Final[frozenset[str]] = frozenset(
    {"keyword", "date", "long", "double", "ip", "boolean"})


def is_aggregatable(mapping: dict[str, Any]) -> bool:
    return mapping.get("type") in AGGREGATABLE and mapping.get("doc_values", True) is not False
