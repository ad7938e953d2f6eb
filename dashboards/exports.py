"""Inventory exports: CSV, JSON, a CycloneDX 1.6 CBOM, a terminal table, and the filters
behind `keytrail inventory --format table|csv|json|cyclonedx --overdue --state --provider`.

All exports are pure and deterministic (sorted by key uid, stable field order, the CBOM
serial number derived from its content), so the same inventory gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from parsers.base import stable_id
from parsers.escaping import csv_cell, terminal

Record = dict[str, Any]

PROVIDER_NAMES: Final[dict[str, str]] = {
    "aws_kms": "AWS KMS",
    "azure_keyvault": "Azure Key Vault",
    "azure_managed_hsm": "Azure Managed HSM",
    "vault_transit": "HashiCorp Vault transit",
    "cloudhsm": "AWS CloudHSM",
    "luna": "Thales Luna HSM",
    "nshield": "Entrust nShield HSM",
}
OVERDUE_STATUSES: Final[frozenset[str]] = frozenset({"overdue", "overdue_lower_bound"})
NIST_STATES: Final[frozenset[str]] = frozenset(
    {"pre-activation", "active", "suspended", "deactivated", "compromised", "destroyed"})

CSV_COLUMNS: Final[tuple[str, ...]] = (
    "uid", "provider", "kind", "account", "region", "vault", "name", "aliases", "spec", "usage",
    "origin", "key_store", "purpose", "state", "substate", "created_at", "created_by",
    "creation_observed", "expires_at", "first_seen", "last_seen", "last_used_crypto",
    "last_used_any", "principal_count", "admin_count", "failures", "transition_count",
    "rotation_status", "rotation_overdue_days", "rotation_next_due", "rotation_policy",
    "rotation_policy_source", "rotation_cryptoperiod_days", "rotation_baseline",
    "rotation_last_rotated_at", "rotation_count", "rotation_observed_interval_days",
    "rotation_enabled", "rotation_period_days", "rotation_eligible",
    "rotation_eligibility_reason", "datasets", "as_of",
)

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _sorted(inventory: Iterable[Record]) -> list[Record]:
    return sorted(inventory, key=lambda r: str(r.get("uid")))


def _rotation(rec: Record) -> Record:
    rot = rec.get("rotation")
    return rot if isinstance(rot, dict) else {}


def _last_used_any(rec: Record) -> str | None:
    used = rec.get("last_used")
    if not isinstance(used, dict):
        return None
    stamps = [str(v) for v in used.values() if v]
    return max(stamps) if stamps else None


# --- filters -------------------------------------------------------------------------------

def is_overdue(rec: Record) -> bool:
    rot = _rotation(rec)
    return rot.get("status") in OVERDUE_STATUSES or int(rot.get("overdue_days") or 0) > 0


def is_ephemeral(rec: Record) -> bool:
    return rec.get("key_class") == "ephemeral"


def ephemeral_summary(inventory: list[Record]) -> list[Record]:
    """Session / ephemeral keys summarised per (scope, application, UTC day): count and
    lifetimes in seconds (min, median, max). Scope is the HSM, cluster or vault of the uid."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for rec in inventory:
        if not is_ephemeral(rec):
            continue
        uid = str(rec.get("uid") or "")
        scope = uid.rsplit("/", 1)[0] if "/" in uid else uid
        key = (scope, str(rec.get("created_by") or "unknown"), str(rec.get("created_at"))[:10])
        groups.setdefault(key, []).append(float(rec.get("lifetime_seconds") or 0.0))
    out = []
    for (scope, app, day), lives in sorted(groups.items()):
        lives.sort()
        out.append({"scope": scope, "application": app, "day": day, "count": len(lives),
                    "lifetime_min_s": lives[0], "lifetime_median_s": lives[len(lives) // 2],
                    "lifetime_max_s": lives[-1]})
    return out


def ephemeral_table(summary: list[Record]) -> str:
    """The summary as terminal lines (what `keytrail inventory` prints after the table)."""
    if not summary:
        return ""
    total = sum(r["count"] for r in summary)
    lines = [f"{total} ephemeral (session) key(s): created, used and destroyed (or never seen "
             "again) by one application within a day,", "summarised per scope, application "
             "and day (list them with --include-ephemeral):",
             f"  {'DAY':10}  {'COUNT':>5}  {'LIFETIME s (min/median/max)':>28}  SCOPE  APPLICATION"]
    for r in summary:
        life = (f"{r['lifetime_min_s']:.0f}/{r['lifetime_median_s']:.0f}/"
                f"{r['lifetime_max_s']:.0f}")
        lines.append(f"  {r['day']:10}  {r['count']:5d}  {life:>28}  {terminal(r['scope'])}  "
                     f"{terminal(r['application'])}")
    return "\n".join(lines) + "\n"


def filter_inventory(inventory: list[Record], overdue: bool = False, state: str | None = None,
                     provider: str | None = None, kind: str | None = None,
                     include_ephemeral: bool = True) -> list[Record]:
    """Records matching every given filter, in their input order.

    `include_ephemeral=False` leaves out session keys (key_class ephemeral): the long-lived
    inventory stays complete and exact, the session keys are summarised instead.

    `state` matches the NIST state or the sub-state (e.g. `pending_deletion`); `provider`
    matches the id (`aws_kms`) or the display name (`AWS KMS`); all case-insensitive.
    """
    def norm(v: Any) -> str:
        return str(v or "").strip().lower()

    want_state, want_provider, want_kind = norm(state), norm(provider), norm(kind)
    out = []
    for rec in inventory:
        if not include_ephemeral and is_ephemeral(rec):
            continue
        if overdue and not is_overdue(rec):
            continue
        if want_state and want_state not in (norm(rec.get("state")), norm(rec.get("substate"))):
            continue
        if want_provider:
            pid = norm(rec.get("provider"))
            if want_provider not in (pid, norm(PROVIDER_NAMES.get(str(rec.get("provider")), ""))):
                continue
        if want_kind and norm(rec.get("kind")) != want_kind:
            continue
        out.append(rec)
    return out


# --- CSV / JSON ----------------------------------------------------------------------------

def flat_row(rec: Record) -> dict[str, Any]:
    """One inventory record as flat CSV columns (lists joined with '; ')."""
    rot = _rotation(rec)
    used = rec.get("last_used") if isinstance(rec.get("last_used"), dict) else {}
    assert isinstance(used, dict)
    return {
        "uid": rec.get("uid"), "provider": rec.get("provider"), "kind": rec.get("kind"),
        "account": rec.get("account"), "region": rec.get("region"), "vault": rec.get("vault"),
        "name": rec.get("name"), "aliases": "; ".join(str(a) for a in rec.get("aliases") or []),
        "spec": rec.get("spec"), "usage": rec.get("usage"), "origin": rec.get("origin"),
        "key_store": rec.get("key_store"), "purpose": rec.get("purpose"),
        "state": rec.get("state"), "substate": rec.get("substate"),
        "created_at": rec.get("created_at"), "created_by": rec.get("created_by"),
        "creation_observed": rec.get("creation_observed"), "expires_at": rec.get("expires_at"),
        "first_seen": rec.get("first_seen"), "last_seen": rec.get("last_seen"),
        "last_used_crypto": used.get("crypto"), "last_used_any": _last_used_any(rec),
        "principal_count": rec.get("principal_count"),
        "admin_count": len(rec.get("admins") or []), "failures": rec.get("failures"),
        "transition_count": len(rec.get("transitions") or []),
        "rotation_status": rot.get("status"), "rotation_overdue_days": rot.get("overdue_days"),
        "rotation_next_due": rot.get("next_due"), "rotation_policy": rot.get("policy"),
        "rotation_policy_source": rot.get("policy_source"),
        "rotation_cryptoperiod_days": rot.get("cryptoperiod_days"),
        "rotation_baseline": rot.get("baseline"),
        "rotation_last_rotated_at": rot.get("last_rotated_at"),
        "rotation_count": rot.get("rotation_count"),
        "rotation_observed_interval_days": rot.get("observed_interval_days"),
        "rotation_enabled": rot.get("enabled"), "rotation_period_days": rot.get("period_days"),
        "rotation_eligible": rot.get("eligible"),
        "rotation_eligibility_reason": rot.get("eligibility_reason"),
        "datasets": "; ".join(str(d) for d in rec.get("datasets") or []),
        "as_of": rec.get("as_of"),
    }


def to_csv(inventory: list[Record]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rec in _sorted(inventory):
        row = flat_row(rec)
        writer.writerow([csv_cell(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def to_json(inventory: list[Record]) -> str:
    """The full records (transitions, usage, rotation) sorted by uid, keys sorted."""
    return json.dumps(_sorted(inventory), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --- CycloneDX 1.6 CBOM --------------------------------------------------------------------

@dataclass(frozen=True)
class Algorithm:
    """What a key spec tells about the algorithm, in CycloneDX terms."""

    name: str
    primitive: str
    material: str  # relatedCryptoMaterialType
    size: int | None = None
    mode: str | None = None
    curve: str | None = None
    parameter_set: str | None = None

    @property
    def ref(self) -> str:
        return f"keytrail:algorithm:{self.name}"

    def component(self) -> Record:
        props: Record = {"primitive": self.primitive}
        if self.parameter_set:
            props["parameterSetIdentifier"] = self.parameter_set
        elif self.size:
            props["parameterSetIdentifier"] = str(self.size)
        if self.mode:
            props["mode"] = self.mode
        if self.curve:
            props["curve"] = self.curve
        return {"type": "cryptographic-asset", "bom-ref": self.ref, "name": self.name,
                "cryptoProperties": {"assetType": "algorithm", "algorithmProperties": props}}


AES_256_GCM: Final[Algorithm] = Algorithm("AES-256-GCM", "ae", "secret-key", 256, "gcm")
_CURVES: Final[dict[str, tuple[str, int]]] = {
    "P256": ("secp256r1", 256), "P384": ("secp384r1", 384), "P521": ("secp521r1", 521),
    "P256K1": ("secp256k1", 256),
}


def algorithm_of(spec: str | None, usage: str | None) -> Algorithm | None:
    """Algorithm for the key specs AWS KMS, Key Vault, Vault transit and HSM logs name."""
    if not spec:
        return None
    s = spec.upper().replace("_", "-")
    u = (usage or "").upper()
    asym = "signature" if "SIGN" in u else "key-agree" if "AGREE" in u else "pke"
    if s == "SYMMETRIC-DEFAULT":
        return AES_256_GCM
    if m := re.fullmatch(r"AES(\d{3})-GCM96", s):
        return Algorithm(f"AES-{m[1]}-GCM", "ae", "secret-key", int(m[1]), "gcm")
    if m := re.fullmatch(r"AES(\d{3})-CMAC", s):
        return Algorithm(f"AES-{m[1]}-CMAC", "mac", "secret-key", int(m[1]))
    if m := re.fullmatch(r"AES[- ]?(128|192|256)", s):
        return Algorithm(f"AES-{m[1]}", "block-cipher", "secret-key", int(m[1]))
    if s in ("OCT", "OCT-HSM", "AES"):
        return Algorithm("AES", "block-cipher", "secret-key")
    if s in ("CHACHA20-POLY1305", "XCHACHA20-POLY1305"):
        return Algorithm(f"{'X' if s[0] == 'X' else ''}ChaCha20-Poly1305", "ae", "secret-key",
                         256)
    if m := re.fullmatch(r"HMAC-?(224|256|384|512)?", s):
        bits = m[1]
        return Algorithm(f"HMAC-SHA{bits}" if bits else "HMAC", "mac", "secret-key",
                         int(bits) if bits else None)
    if m := re.fullmatch(r"RSA-?(\d{4})", s):
        return Algorithm(f"RSA-{m[1]}", asym, "private-key", int(m[1]))
    if s in ("RSA", "RSA-HSM"):
        return Algorithm("RSA", asym, "private-key")
    if m := re.fullmatch(r"(?:ECC-NIST-|ECC-SECG-|ECDSA-|EC-)(P\d{3}K?1?)", s):
        curve, bits = _CURVES.get(m[1], (m[1].lower(), 0))
        name = "ECDH" if asym == "key-agree" else "ECDSA"
        return Algorithm(f"{name}-{curve}", "key-agree" if name == "ECDH" else "signature",
                         "private-key", bits or None, curve=curve)
    if s in ("EC", "EC-HSM", "ECDSA"):
        return Algorithm("ECDSA", "signature", "private-key")
    if s == "ED25519":
        return Algorithm("Ed25519", "signature", "private-key", 256, curve="Ed25519")
    if m := re.fullmatch(r"ML-DSA-?(44|65|87)", s):
        return Algorithm(f"ML-DSA-{m[1]}", "signature", "private-key", parameter_set=m[1])
    if s == "SM2":
        return Algorithm("SM2", asym, "private-key", 256, curve="sm2p256v1")
    return None


def _material_type(rec: Record, alg: Algorithm | None) -> str:
    kind = rec.get("kind") or "key"
    if kind != "key":
        # Key Vault secrets and certificates are not bare keys; their kind is a property.
        return "other"
    return alg.material if alg else "key"


def _mechanism(rec: Record) -> tuple[str | None, Algorithm | None]:
    """Who protects the material (`securedBy`) and, where documented, with what."""
    provider = str(rec.get("provider") or "")
    origin = str(rec.get("origin") or "").upper()
    spec = str(rec.get("spec") or "").upper()
    if provider == "aws_kms":
        if origin == "AWS_CLOUDHSM":
            return "AWS KMS custom key store (AWS CloudHSM)", None
        if origin == "EXTERNAL_KEY_STORE":
            return "AWS KMS external key store", None
        # KMS HSMs keep key material encrypted under AES-256-GCM domain keys.
        return "AWS KMS", AES_256_GCM
    if provider == "azure_keyvault":
        if spec.endswith("-HSM"):
            return "Azure Key Vault (HSM-protected)", None
        return "Azure Key Vault", None
    if provider == "vault_transit":
        # Vault's storage barrier encrypts everything it stores with AES-256-GCM.
        return "HashiCorp Vault transit", AES_256_GCM
    name = PROVIDER_NAMES.get(provider)
    return (name or provider or None), None


def _date(value: Any) -> str | None:
    return value if isinstance(value, str) and _DATE_TIME.match(value) else None


def _dates(rec: Record) -> dict[str, str]:
    transitions = [t for t in rec.get("transitions") or [] if isinstance(t, dict)]
    activated = next((t.get("at") for t in transitions if t.get("to") == "active"), None)
    updates = [str(t["at"]) for t in transitions if t.get("operation") != "create" and t.get("at")]
    rot = _rotation(rec)
    if rot.get("last_rotated_at"):
        updates.append(str(rot["last_rotated_at"]))
    out: dict[str, str] = {}
    for field, value in (("creationDate", rec.get("created_at")), ("activationDate", activated),
                         ("updateDate", max(updates) if updates else None),
                         ("expirationDate", rec.get("expires_at"))):
        d = _date(value)
        if d:
            out[field] = d
    return out


def _prop_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _properties(rec: Record) -> list[dict[str, str]]:
    rot = _rotation(rec)
    used = rec.get("last_used") if isinstance(rec.get("last_used"), dict) else {}
    assert isinstance(used, dict)
    pairs: list[tuple[str, Any]] = [
        ("keytrail:key:provider", rec.get("provider")),
        ("keytrail:key:kind", rec.get("kind")),
        ("keytrail:key:account", rec.get("account")),
        ("keytrail:key:region", rec.get("region")),
        ("keytrail:key:vault", rec.get("vault")),
        ("keytrail:key:name", rec.get("name")),
        *(("keytrail:key:alias", a) for a in rec.get("aliases") or []),
        ("keytrail:key:spec", rec.get("spec")),
        ("keytrail:key:usage", rec.get("usage")),
        ("keytrail:key:origin", rec.get("origin")),
        ("keytrail:key:store", rec.get("key_store")),
        ("keytrail:key:purpose", rec.get("purpose")),
        ("keytrail:state:substate", rec.get("substate")),
        ("keytrail:created_by", rec.get("created_by")),
        ("keytrail:creation_observed", rec.get("creation_observed")),
        ("keytrail:rotation:status", rot.get("status")),
        ("keytrail:rotation:overdue_days", rot.get("overdue_days")),
        ("keytrail:rotation:next_due", rot.get("next_due")),
        ("keytrail:rotation:policy", rot.get("policy")),
        ("keytrail:rotation:policy_source", rot.get("policy_source")),
        ("keytrail:rotation:cryptoperiod_days", rot.get("cryptoperiod_days")),
        ("keytrail:rotation:last_rotated_at", rot.get("last_rotated_at")),
        ("keytrail:rotation:count", rot.get("rotation_count")),
        ("keytrail:rotation:observed_interval_days", rot.get("observed_interval_days")),
        ("keytrail:rotation:enabled", rot.get("enabled")),
        ("keytrail:rotation:period_days", rot.get("period_days")),
        ("keytrail:rotation:eligible", rot.get("eligible")),
        ("keytrail:rotation:eligibility_reason", rot.get("eligibility_reason")),
        ("keytrail:first_seen", rec.get("first_seen")),
        ("keytrail:last_seen", rec.get("last_seen")),
        *((f"keytrail:last_used:{cls}", ts) for cls, ts in sorted(used.items())),
        ("keytrail:principal_count", rec.get("principal_count")),
        ("keytrail:failures", rec.get("failures")),
    ]
    return [{"name": n, "value": _prop_value(v)} for n, v in pairs if v is not None and v != ""]


def _key_component(rec: Record) -> tuple[Record, list[Algorithm]]:
    alg = algorithm_of(rec.get("spec"), rec.get("usage"))
    mechanism, protector = _mechanism(rec)
    material: Record = {"type": _material_type(rec, alg), "id": str(rec["uid"])}
    state = rec.get("state")
    if state in NIST_STATES:
        material["state"] = state
    used: list[Algorithm] = []
    if alg is not None:
        material["algorithmRef"] = alg.ref
        used.append(alg)
        if alg.size:
            material["size"] = alg.size
    material.update(_dates(rec))
    if mechanism:
        secured: Record = {"mechanism": mechanism}
        if protector is not None:
            secured["algorithmRef"] = protector.ref
            used.append(protector)
        material["securedBy"] = secured
    aliases = rec.get("aliases") or []
    name = str(sorted(aliases)[0] if aliases else rec.get("name") or rec["uid"])
    component: Record = {
        "type": "cryptographic-asset",
        "bom-ref": str(rec["uid"]),
        "name": name,
        "cryptoProperties": {"assetType": "related-crypto-material",
                             "relatedCryptoMaterialProperties": material},
        "properties": _properties(rec),
    }
    return component, used


def _tool_version() -> str:
    try:
        return metadata.version("keytrail")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def to_cyclonedx(inventory: list[Record], as_of: str) -> dict[str, Any]:
    """A CycloneDX 1.6 CBOM: one `related-crypto-material` component per key, plus the
    algorithm components they reference."""
    if not _DATE_TIME.match(as_of):
        raise ValueError(f"as_of must be an RFC 3339 date-time, got {as_of!r}")
    keys: list[Record] = []
    algorithms: dict[str, Algorithm] = {}
    for rec in _sorted(inventory):
        if not rec.get("uid"):
            continue
        component, used = _key_component(rec)
        keys.append(component)
        for alg in used:
            algorithms[alg.ref] = alg
    components = [algorithms[ref].component() for ref in sorted(algorithms)] + keys
    content = json.dumps({"as_of": as_of, "components": components}, sort_keys=True)
    serial = uuid.UUID(hex=stable_id("cyclonedx", content), version=5)
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": as_of,
            "lifecycles": [{"phase": "operations"}],
            "tools": {"components": [{"type": "application", "name": "keytrail",
                                      "version": _tool_version()}]},
            "properties": [{"name": "keytrail:key_count", "value": str(len(keys))},
                           {"name": "keytrail:source",
                            "value": "key-management audit logs (observed, not declared)"}],
        },
        "components": components,
    }


def to_cyclonedx_json(inventory: list[Record], as_of: str) -> str:
    return json.dumps(to_cyclonedx(inventory, as_of), indent=2, ensure_ascii=False) + "\n"


# --- terminal table ------------------------------------------------------------------------

def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(inventory: list[Record]) -> str:
    """A plain fixed-width table for the terminal (control characters neutralised)."""
    head = ("KEY", "PROVIDER", "STATE", "ROTATION", "OVERDUE_D", "LAST_USED", "UID")
    limits = (40, 24, 34, 22, 9, 16, 10_000)
    rows: list[tuple[str, ...]] = []
    for rec in _sorted(inventory):
        rot = _rotation(rec)
        aliases = rec.get("aliases") or []
        label = str(sorted(aliases)[0] if aliases else rec.get("name") or "-")
        state = str(rec.get("state") or "-") + (f" ({rec['substate']})" if rec.get("substate")
                                                 else "")
        last = _last_used_any(rec)
        cells = (label, PROVIDER_NAMES.get(str(rec.get("provider")), str(rec.get("provider"))),
                 state, str(rot.get("status") or "-"), str(rot.get("overdue_days") or 0),
                 last[:16].replace("T", " ") if last else "-", str(rec.get("uid")))
        rows.append(tuple(_clip(terminal(c), w) for c, w in zip(cells, limits, strict=True)))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    numeric = {4}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(head), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    if not rows:
        out.append("(no keys)")
    overdue = sum(1 for r in inventory if is_overdue(r))
    out.append(f"{len(rows)} key(s), {overdue} overdue for rotation")
    return "\n".join(out) + "\n"


FORMATS: Final[tuple[str, ...]] = ("table", "csv", "json", "cyclonedx")


def render(fmt: str, inventory: list[Record], as_of: str) -> str:
    """The inventory in one of FORMATS (what `keytrail inventory --format` prints)."""
    if fmt == "table":
        return table(inventory)
    if fmt == "csv":
        return to_csv(inventory)
    if fmt == "json":
        return to_json(inventory)
    if fmt == "cyclonedx":
        return to_cyclonedx_json(inventory, as_of)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
