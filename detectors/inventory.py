"""Key inventory: per-key accumulation of events, the NIST SP 800-57 state machine, rotation.

`KeyAccumulator` is a mergeable partial (associative, commutative, order-independent) so the
pipeline can build it per file and combine per key; `build_inventory_record` turns the merged
partial into the `KeyInventoryRecord` auditors read, given the cryptoperiod policies and the
as-of time.
"""

from __future__ import annotations

import fnmatch
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any, Final

from parsers.base import stable_id
from parsers.schema import KeyEvent

# Operations kept in full in the per-key history (they change state, policy or material).
# Reads of material (export: SecretGet, kv reads, HSM extraction) are high-volume and make
# nobody an administrator; they stay in the events and alerts, not in the key's history.
HISTORY_OPERATIONS: Final[frozenset[str]] = frozenset(
    {
        "create", "import", "enable", "disable", "rotate", "schedule_deletion",
        "cancel_deletion", "destroy", "purge", "restore", "backup",
        "update_policy", "grant", "revoke_grant",
    }
)
MAX_PRINCIPALS: Final[int] = 10_000
MAX_EVIDENCE: Final[int] = 50
# A key's history keeps its earliest HISTORY_HEAD and latest HISTORY_TAIL entries by
# (time, event id): creation and the current state survive, memory stays bounded per key,
# and the kept set is the same whatever order partials merge in (bottom-k/top-k merge).
HISTORY_HEAD: Final[int] = 100
HISTORY_TAIL: Final[int] = 400
_HISTORY_SLACK: Final[int] = 500  # prune in batches, not on every entry
ATTRS: Final[tuple[str, ...]] = (
    "key_provider", "key_kind", "key_account", "key_region", "key_vault", "key_name",
    "key_spec", "key_usage", "key_origin", "key_store", "key_expires_at",
)
# Key material no longer present but the key object remains (can be re-imported).
MATERIAL_DELETED_ACTIONS: Final[frozenset[str]] = frozenset(
    {"DeleteImportedKeyMaterial", "DeleteExpiredKeyMaterial"}
)
NIST_STATES: Final[tuple[str, ...]] = (
    "pre-activation", "active", "suspended", "deactivated", "compromised", "destroyed",
)


def _later(a: tuple[str, str, Any] | None, b: tuple[str, str, Any] | None) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a if (a[0], a[1]) >= (b[0], b[1]) else b


@dataclass
class KeyAccumulator:
    """Mergeable per-key partial built from events."""

    uid: str
    first_seen: str | None = None
    last_seen: str | None = None
    attrs: dict[str, tuple[str, str, Any]] = field(default_factory=dict)
    aliases: set[str] = field(default_factory=set)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)  # event_id -> entry
    history_truncated: bool = False
    last_used: dict[str, str] = field(default_factory=dict)  # operation_class -> ts
    op_counts: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    principals: set[str] = field(default_factory=set)  # the MAX_PRINCIPALS smallest
    _principals_max: str | None = field(default=None, compare=False, repr=False)
    admins: set[str] = field(default_factory=set)
    evidence: set[str] = field(default_factory=set)  # the MAX_EVIDENCE smallest event ids
    _evidence_max: str | None = field(default=None, compare=False, repr=False)
    datasets: set[str] = field(default_factory=set)

    def add(self, ev: KeyEvent, uid: str | None = None) -> None:
        ts = ev.timestamp
        if self.first_seen is None or ts < self.first_seen:
            self.first_seen = ts
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts
        self.datasets.add(ev.dataset)
        op = ev.operation
        self.op_counts[op] = self.op_counts.get(op, 0) + 1
        if ev.outcome == "failure":
            self.failures += 1
        principal = ev.user_id
        if ev.outcome != "failure":
            cls = ev.operation_class
            prev = self.last_used.get(cls)
            if prev is None or ts > prev:
                self.last_used[cls] = ts
        if principal and principal not in self.principals:
            if len(self.principals) < MAX_PRINCIPALS:
                self.principals.add(principal)
            else:  # bottom-k, as in merge(): independent of arrival order
                top = self._principals_max
                if top is None:
                    top = self._principals_max = max(self.principals)
                if principal < top:
                    self.principals.discard(top)
                    self.principals.add(principal)
                    self._principals_max = None
        # Attributes describe the key only on the primary key of the event. Crypto events
        # repeat what the key's first event said, so after that only non-crypto events
        # (create, import, policy...) are read for attributes: far fewer getattr calls.
        if (uid is None or uid == ev.key_uid) and (
                not self.attrs or ev.operation_class != "crypto"):
            stamp = (ts, ev.event_id)
            for attr in ATTRS:
                value = getattr(ev, attr)
                if value is not None:
                    cur = self.attrs.get(attr)
                    if cur is None or stamp >= (cur[0], cur[1]):
                        self.attrs[attr] = (ts, ev.event_id, value)
            if ev.key_alias:
                self.aliases.add(ev.key_alias)
        if op in HISTORY_OPERATIONS or ev.operation_class == "policy":
            if principal and ev.outcome != "failure":
                self.admins.add(principal)
            entry = _history_entry(ev)
            mine = self.history.get(ev.event_id)
            if mine is None or _prov(entry) < _prov(mine):
                self.history[ev.event_id] = entry
                if len(self.history) > HISTORY_HEAD + HISTORY_TAIL + _HISTORY_SLACK:
                    self.prune_history()
        # Bottom-k by event id, like merge(): the same sample whatever the arrival order.
        evs = self.evidence
        if len(evs) < MAX_EVIDENCE:
            evs.add(ev.event_id)
        else:
            top = self._evidence_max
            if top is None:
                top = self._evidence_max = max(evs)
            eid = ev.event_id
            if eid < top and eid not in evs:
                evs.discard(top)
                evs.add(eid)
                self._evidence_max = None

    def merge(self, other: KeyAccumulator) -> KeyAccumulator:
        if other.first_seen and (self.first_seen is None or other.first_seen < self.first_seen):
            self.first_seen = other.first_seen
        if other.last_seen and (self.last_seen is None or other.last_seen > self.last_seen):
            self.last_seen = other.last_seen
        for k, v in other.attrs.items():
            self.attrs[k] = _later(self.attrs.get(k), v)
        self.aliases |= other.aliases
        for eid, entry in other.history.items():
            mine = self.history.get(eid)
            if mine is None or _prov(entry) < _prov(mine):
                # The same event delivered twice: keep the first provenance, deterministically.
                self.history[eid] = entry
        self.history_truncated = self.history_truncated or other.history_truncated
        if len(self.history) > HISTORY_HEAD + HISTORY_TAIL + _HISTORY_SLACK:
            self.prune_history()
        for cls, ts in other.last_used.items():
            if cls not in self.last_used or ts > self.last_used[cls]:
                self.last_used[cls] = ts
        for op, n in other.op_counts.items():
            self.op_counts[op] = self.op_counts.get(op, 0) + n
        self.failures += other.failures
        self.principals |= other.principals
        if len(self.principals) > MAX_PRINCIPALS:
            self.principals = set(sorted(self.principals)[:MAX_PRINCIPALS])
        self._principals_max = None
        self.admins |= other.admins
        self.evidence |= other.evidence
        if len(self.evidence) > MAX_EVIDENCE:
            self.evidence = set(sorted(self.evidence)[:MAX_EVIDENCE])
        self._evidence_max = None
        self.datasets |= other.datasets
        return self

    def repoint(self, ev: KeyEvent) -> None:
        """Make `ev` (the copy of its event that is kept) the one its history entry
        points at (pipelines.dedupe, live mode)."""
        if ev.event_id in self.history:
            self.history[ev.event_id] = _history_entry(ev)

    def retract(self, dup: KeyAccumulator) -> None:
        """Un-count `dup`, a partial of events counted twice (pipelines.dedupe). Only the
        counters are additive; every other field is unchanged by a second copy."""
        for op, n in dup.op_counts.items():
            left = self.op_counts.get(op, 0) - n
            if left > 0:
                self.op_counts[op] = left
            else:
                self.op_counts.pop(op, None)
        self.failures = max(0, self.failures - dup.failures)

    def prune_history(self, slack: int = 0) -> None:
        """Keep the earliest HISTORY_HEAD and latest HISTORY_TAIL entries (+ slack)."""
        if len(self.history) <= HISTORY_HEAD + HISTORY_TAIL + slack:
            return
        order = sorted(self.history.values(), key=_history_order)
        keep = order[:HISTORY_HEAD] + order[-HISTORY_TAIL:]
        self.history = {e["event_id"]: e for e in keep}
        self.history_truncated = True


def _history_order(e: dict[str, Any]) -> tuple[str, str]:
    return (e["ts"], e["event_id"])


def _prov(entry: dict[str, Any]) -> tuple[str, int]:
    return (entry["log_file_path"], entry["log_offset"])


def _history_entry(ev: KeyEvent) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "ts": ev.timestamp,
        "event_id": ev.event_id,
        "operation": ev.operation,
        "action": ev.action,
        "outcome": ev.outcome,
        "user_id": ev.user_id,
        "dataset": ev.dataset,
        "log_file_path": ev.log_file_path,
        "log_offset": ev.log_offset,
    }
    if ev.key_rotation_period_days is not None:
        entry["rotation_period_days"] = ev.key_rotation_period_days
    if ev.key_deletion_date is not None:
        entry["deletion_date"] = ev.key_deletion_date
    if ev.key_origin is not None:
        entry["origin"] = ev.key_origin
    # Vendor flags that change rotation settings (parsers put them in extra).
    for name in ("hashicorp_vault.key_config.auto_rotate_period", "azure.keyvault.rotation_enabled",
                 "aws.cloudtrail.policy_public"):
        if name in ev.extra:
            entry[name] = ev.extra[name]
    return entry


# --- cryptoperiod policies -------------------------------------------------------------

@dataclass(frozen=True)
class CryptoperiodPolicy:
    """A cryptoperiod applied to keys that match all given selectors (None = any)."""

    name: str
    days: int | None  # None: no cryptoperiod (not evaluated)
    provider: str | None = None
    purpose: str | None = None  # encryption | signing | mac | wrapping | derivation | secret
    kind: str | None = None
    key: str | None = None  # glob on keytrail.key.uid
    alias: str | None = None  # glob on any alias / name
    source: str = "config"

    def matches(self, rec: dict[str, Any]) -> bool:
        if self.provider is not None and rec.get("provider") != self.provider:
            return False
        if self.purpose is not None and rec.get("purpose") != self.purpose:
            return False
        if self.kind is not None and rec.get("kind") != self.kind:
            return False
        if self.key is not None and not fnmatch.fnmatchcase(rec["uid"], self.key):
            return False
        if self.alias is not None:
            names = [*rec.get("aliases", []), rec.get("name") or ""]
            if not any(fnmatch.fnmatchcase(n, self.alias) for n in names):
                return False
        return True


# NIST SP 800-57 Pt1 Rev5 Table 1 and provider defaults; user policies come first.
# Session (ephemeral) keys: PKCS#11 CKA_TOKEN=false objects die with their session; payment
# and TLS applications create one per transaction batch and destroy it seconds later.
EPHEMERAL_MAX_SECONDS: Final[int] = 86_400


HSM_PROVIDERS: Final[frozenset[str]] = frozenset({"cloudhsm", "luna", "nshield"})
# A session object's end is often not logged (it dies with C_CloseSession): an HSM key
# created, used only by its creator within its first EPHEMERAL_MAX_SECONDS and then never
# again for SESSION_QUIET_DAYS is a session key too.
SESSION_QUIET_DAYS: Final[int] = 7


def classify_lifetime(created: dict[str, Any] | None, transitions: list[dict[str, Any]],
                      state: str, provider: str | None = None,
                      last_seen: str | None = None, principals: set[str] | None = None,
                      as_of: str | None = None,
                      op_counts: dict[str, int] | None = None) -> tuple[str, float | None]:
    """('ephemeral' | 'long_lived', lifetime in seconds when creation and destruction are
    both observed). Ephemeral: created and destroyed by the same identity within
    EPHEMERAL_MAX_SECONDS, with no other state change in between; or (HSM keys) created and
    used only by its creator within that time and silent for SESSION_QUIET_DAYS since."""
    # A masked export/insert is cluster synchronisation, which only token (persistent)
    # objects get: such a key is long-lived however quiet it is.
    synced = bool((op_counts or {}).get("export") or (op_counts or {}).get("import"))
    if (created is not None and state == "active" and provider in HSM_PROVIDERS
            and not synced and last_seen and as_of and len(transitions) == 1
            and set(principals or ()) <= {created.get("user_id")}):
        span = (_parse_ts(last_seen) - _parse_ts(created["ts"])).total_seconds()
        quiet = (_parse_ts(as_of) - _parse_ts(last_seen)).total_seconds()
        if span <= EPHEMERAL_MAX_SECONDS and quiet >= SESSION_QUIET_DAYS * 86_400:
            return "ephemeral", span
    if created is None or state != "destroyed" or not transitions:
        return "long_lived", None
    end = transitions[-1]
    lifetime = (_parse_ts(end["at"]) - _parse_ts(created["ts"])).total_seconds()
    middle = [t for t in transitions[1:-1] if t["to"] not in ("active", "destroyed")]
    same = (end.get("by") or "") == (created.get("user_id") or "")
    if lifetime <= EPHEMERAL_MAX_SECONDS and same and not middle:
        return "ephemeral", lifetime
    return "long_lived", lifetime


DEFAULT_POLICIES: Final[tuple[CryptoperiodPolicy, ...]] = (
    CryptoperiodPolicy("secrets-not-evaluated", None, kind="secret", source="default"),
    CryptoperiodPolicy("certificates-by-expiry", None, kind="certificate", source="default"),
    CryptoperiodPolicy("aws-kms-automatic-rotation-365d", 365, provider="aws_kms",
                       purpose="encryption", source="AWS KMS default rotation period"),
    CryptoperiodPolicy("nist-private-signature-key-3y", 1095, purpose="signing",
                       source="NIST SP 800-57 Pt1 Table 1: private signature key 1-3 years"),
    CryptoperiodPolicy("nist-symmetric-authentication-2y", 730, purpose="mac",
                       source="NIST SP 800-57 Pt1 Table 1: symmetric authentication key <= 2y"),
    CryptoperiodPolicy("nist-key-derivation-1y", 365, purpose="derivation",
                       source="NIST SP 800-57 Pt1 Table 1: symmetric key-derivation key ~1y"),
    CryptoperiodPolicy("nist-key-wrapping-2y", 730, purpose="wrapping",
                       source="NIST SP 800-57 Pt1 Table 1: symmetric key-wrapping key <= 2y"),
    CryptoperiodPolicy("nist-data-encryption-2y", 730, purpose="encryption",
                       source="NIST SP 800-57 Pt1 Table 1: symmetric data-encryption key "
                       "originator-usage period <= 2y"),
    CryptoperiodPolicy("nist-default-2y", 730, source="NIST SP 800-57 Pt1 Table 1 default"),
)


def key_purpose(kind: str | None, spec: str | None, usage: str | None, ops: dict[str, int]) -> str:
    """Purpose class used to choose a cryptoperiod."""
    if kind == "secret":
        return "secret"
    u = (usage or "").upper()
    s = (spec or "").upper()
    if "SIGN" in u or any(t in s for t in ("ED25519", "ECDSA", "RSA-PSS")) or (
        ops.get("sign", 0) + ops.get("verify", 0) > 0 and not ops.get("encrypt")
    ):
        return "signing"
    if "MAC" in u or s.startswith("HMAC") or ops.get("mac"):
        return "mac"
    if "DERIVE" in u or "KEY_AGREEMENT" in u or ops.get("derive"):
        return "derivation"
    if "WRAP" in u or ((ops.get("wrap", 0) + ops.get("unwrap", 0)) > 0 and not ops.get("encrypt")):
        return "wrapping"
    return "encryption"


def rotation_eligibility(provider: str | None, kind: str | None, spec: str | None,
                         usage: str | None, origin: str | None, store: str | None,
                         purpose: str) -> tuple[bool, str]:
    """Whether the provider can rotate this key automatically, and why not."""
    if kind in ("secret", "certificate"):
        return False, f"{kind}s are rotated by their owners, not by the key service"
    s = (spec or "").upper()
    o = (origin or "").upper()
    if provider == "aws_kms":
        if o == "EXTERNAL":
            return False, "imported key material (origin EXTERNAL) cannot be rotated automatically"
        if o in ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE") or store:
            return False, "keys in a custom key store cannot be rotated automatically"
        if s and s not in ("SYMMETRIC_DEFAULT",):
            return False, f"asymmetric or HMAC key ({spec}) cannot be rotated automatically"
        if purpose in ("signing", "mac"):
            return False, "asymmetric or HMAC keys cannot be rotated automatically"
        return True, "symmetric encryption key: automatic rotation available"
    if provider in ("cloudhsm", "luna", "nshield"):
        return False, "HSM keys are rotated by generating a new key (no automatic rotation)"
    if provider in ("azure_keyvault", "azure_managed_hsm"):
        return True, "Key Vault rotation policy available"
    if provider == "vault_transit":
        return True, "transit auto_rotate_period available"
    return False, "provider rotation capability unknown"


def _parse_ts(ts: str) -> datetime:
    return datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _fmt(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _state_after(state: str, substate: str | None, entry: dict[str, Any], provider: str | None,
                 before_deletion: tuple[str, str | None]) -> tuple[str, str | None]:
    op = entry["operation"]
    action = entry["action"]
    if op == "create":
        origin = (entry.get("origin") or "").upper()
        if origin == "EXTERNAL":
            return "pre-activation", "pending_import"
        return "active", None
    if op == "import":
        return ("active", None) if state in ("pre-activation", "deactivated", "active") else (
            state, substate)
    if op == "enable":
        return "active", None
    if op == "disable":
        return "suspended", "disabled"
    if op == "schedule_deletion":
        return "deactivated", "pending_deletion"
    if op == "cancel_deletion":
        # AWS leaves a key Disabled after CancelKeyDeletion; Azure recover restores it.
        if provider == "aws_kms":
            return "suspended", "disabled"
        return before_deletion
    if op == "destroy":
        if action in MATERIAL_DELETED_ACTIONS:
            return "deactivated", "pending_import"
        return "destroyed", None
    if op == "purge":
        return "destroyed", "purged"
    if op == "restore":
        return "active", None
    return state, substate


def build_inventory_record(
    acc: KeyAccumulator,
    as_of: str,
    policies: tuple[CryptoperiodPolicy, ...] = DEFAULT_POLICIES,
    compromised: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The auditor-facing inventory record for one key (JSON-able, deterministic)."""
    attr = {k: v[2] for k, v in acc.attrs.items()}
    provider = attr.get("key_provider")
    kind = attr.get("key_kind") or "key"
    acc.prune_history()
    history = sorted(acc.history.values(), key=_history_order)
    created = next((h for h in history if h["operation"] == "create" and h["outcome"] != "failure"),
                   None)
    # State machine over successful lifecycle events.
    state, substate = ("active", None)
    known_start = created is not None
    if created is None:
        state, substate = ("active", "inferred_from_use")
    transitions: list[dict[str, Any]] = []
    before_deletion: tuple[str, str | None] = (state, substate)
    rotation_enabled: bool | None = None
    rotation_period: int | None = None
    rotations: list[str] = []
    for h in history:
        if h["outcome"] == "failure":
            continue
        op = h["operation"]
        if op == "rotate":
            rotations.append(h["ts"])
        azure_rotation = h.get("azure.keyvault.rotation_enabled")
        if h["action"] == "EnableKeyRotation" or azure_rotation is True:
            rotation_enabled = True
            rotation_period = h.get("rotation_period_days", rotation_period)
        elif h["action"] == "DisableKeyRotation" or azure_rotation is False:
            rotation_enabled = False
        arp = h.get("hashicorp_vault.key_config.auto_rotate_period")
        if arp is not None:
            rotation_enabled = bool(arp) and str(arp) not in ("0", "0s")
        if op == "schedule_deletion":
            before_deletion = (state, substate)
        new_state, new_sub = _state_after(state, substate, h, provider, before_deletion)
        if (new_state, new_sub) != (state, substate) or op == "create":
            transitions.append({
                "at": h["ts"], "from": None if op == "create" and not transitions else state,
                "to": new_state, "substate": new_sub, "operation": op, "action": h["action"],
                "event_id": h["event_id"], "by": h.get("user_id"),
                "log_file_path": h.get("log_file_path"), "log_offset": h.get("log_offset"),
            })
            state, substate = new_state, new_sub
    if acc.uid in compromised:
        transitions.append({"at": as_of, "from": state, "to": "compromised", "substate": None,
                            "operation": "config", "action": "marked compromised in config",
                            "event_id": None, "by": None, "log_file_path": None,
                            "log_offset": None})
        state, substate = "compromised", None

    purpose = key_purpose(kind, attr.get("key_spec"), attr.get("key_usage"), acc.op_counts)
    eligible, eligibility_reason = rotation_eligibility(
        provider, kind, attr.get("key_spec"), attr.get("key_usage"), attr.get("key_origin"),
        attr.get("key_store"), purpose)
    rec: dict[str, Any] = {
        "uid": acc.uid, "provider": provider, "kind": kind, "purpose": purpose,
        "aliases": sorted(acc.aliases), "name": attr.get("key_name"),
    }
    policy = next((p for p in policies if p.matches(rec)), None)
    material_since = created["ts"] if created else acc.first_seen
    last_rotated = rotations[-1] if rotations else None
    baseline = last_rotated or material_since
    as_of_dt = _parse_ts(as_of)
    next_due = None
    overdue_days = 0
    rotation_status = "not_evaluated"
    if policy is not None and policy.days is not None and baseline is not None and state not in (
            "destroyed",):
        due = _parse_ts(baseline) + timedelta(days=policy.days)
        next_due = _fmt(due)
        overdue_days = max(0, (as_of_dt - due).days)
        if overdue_days > 0:
            rotation_status = "overdue" if known_start or last_rotated else "overdue_lower_bound"
        else:
            rotation_status = "within_cryptoperiod"
    key_class, lifetime = classify_lifetime(created, transitions, state, provider,
                                            acc.last_seen, acc.principals, as_of,
                                            acc.op_counts)
    points = ([material_since] if material_since and known_start else []) + rotations
    intervals = [
        (_parse_ts(b) - _parse_ts(a)).days for a, b in itertools.pairwise(points)
    ]
    record: dict[str, Any] = {
        "inventory_id": stable_id("inventory", acc.uid),
        "uid": acc.uid,
        "provider": provider,
        "kind": kind,
        "account": attr.get("key_account"),
        "region": attr.get("key_region"),
        "vault": attr.get("key_vault"),
        "name": attr.get("key_name"),
        "aliases": sorted(acc.aliases),
        "spec": attr.get("key_spec"),
        "usage": attr.get("key_usage"),
        "origin": attr.get("key_origin"),
        "key_store": attr.get("key_store"),
        "purpose": purpose,
        "expires_at": attr.get("key_expires_at"),
        "created_at": created["ts"] if created else None,
        "created_by": created.get("user_id") if created else None,
        "creation_observed": known_start,
        "state": state,
        "substate": substate,
        "key_class": key_class,
        "lifetime_seconds": lifetime,
        "transitions": transitions,
        "history_truncated": acc.history_truncated,
        "rotation": {
            "eligible": eligible,
            "eligibility_reason": eligibility_reason,
            "enabled": rotation_enabled,
            "period_days": rotation_period,
            "last_rotated_at": last_rotated,
            "rotation_count": len(rotations),
            "observed_interval_days": median(intervals) if intervals else None,
            "policy": policy.name if policy else None,
            "policy_source": policy.source if policy else None,
            "cryptoperiod_days": policy.days if policy else None,
            "baseline": baseline,
            "next_due": next_due,
            "overdue_days": overdue_days,
            "status": rotation_status,
        },
        "last_used": dict(sorted(acc.last_used.items())),
        "usage_counts": dict(sorted(acc.op_counts.items())),
        "failures": acc.failures,
        "principals": sorted(acc.principals),
        "principal_count": len(acc.principals),
        "admins": sorted(acc.admins),
        "first_seen": acc.first_seen,
        "last_seen": acc.last_seen,
        "datasets": sorted(acc.datasets),
        "evidence_event_ids": sorted(acc.evidence),
        "as_of": as_of,
    }
    return record
