"""Azure Key Vault rule and baseline detectors (event.action is the AuditEvent operationName)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, ClassVar, Final

from detectors.base import (
    Bucket,
    EventDetector,
    Evidence,
    Finding,
    InventoryDetector,
    WindowDetector,
)
from detectors.common import (
    bursts,
    days_between,
    finding_for_event,
    merged,
    principal_identity,
    short_list,
    who,
)
from detectors.stats import robust_z
from parsers.schema import KeyEvent

AKV_DATASETS: Final[frozenset[str]] = frozenset({"azure.keyvault"})
AKV_PROVIDERS: Final[frozenset[str]] = frozenset({"azure_keyvault", "azure_managed_hsm"})


def _akv(ev: KeyEvent) -> bool:
    return ev.dataset in AKV_DATASETS


def vault_of(ev: KeyEvent) -> str:
    """Vault name (lower-case) for grouping; from the parser or the key uid host."""
    if ev.key_vault:
        return ev.key_vault.lower()
    return vault_of_uid(ev.key_uid or "")


def vault_of_uid(uid: str) -> str:
    if uid.startswith("https://"):
        return uid[8:].split("/", 1)[0].split(".", 1)[0]
    return ""


def _what(ev: KeyEvent) -> str:
    kind = ev.key_kind or "object"
    return f"{kind} {ev.key_uid or vault_of(ev)}"


class AkvObjectDeleted(EventDetector):
    """A key, secret, certificate or whole vault was deleted (soft delete)."""

    id: ClassVar[str] = "akv_object_deleted"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _akv(ev) or ev.outcome != "success" or ev.operation not in (
                "schedule_deletion", "destroy"):
            return None
        return finding_for_event(
            ev, f"{who(ev)} deleted {_what(ev)} ({ev.action}). Dependent applications fail "
            "until it is recovered; with purge protection off it can then be purged for good.")


class AkvObjectPurged(EventDetector):
    """A deleted key, secret, certificate or vault was purged (permanently destroyed)."""

    id: ClassVar[str] = "akv_object_purged"
    operations: ClassVar[frozenset[str] | None] = frozenset({"purge"})

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _akv(ev) or ev.outcome != "success" or ev.operation != "purge":
            return None
        return finding_for_event(
            ev, f"{who(ev)} purged {_what(ev)} ({ev.action}). Purged material cannot be "
            "recovered; data encrypted under a purged key is lost.")


class AkvBackupRestoreRecover(EventDetector):
    """Backup (material leaves the vault as a blob), restore or recover of an object."""

    id: ClassVar[str] = "akv_backup_restore_recover"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _akv(ev) or ev.outcome != "success" or ev.operation not in (
                "backup", "restore", "cancel_deletion"):
            return None
        verb = {"backup": "backed up", "restore": "restored",
                "cancel_deletion": "recovered"}[ev.operation]
        sev = "high" if ev.operation == "backup" else None
        return finding_for_event(
            ev, f"{who(ev)} {verb} {_what(ev)} ({ev.action}). A backup blob can be restored "
            "into any vault of the same subscription/geography; confirm it was planned.",
            severity=sev)


def _is_access_policy_change(ev: KeyEvent) -> bool:
    if not _akv(ev) or ev.outcome != "success":
        return False
    a = (ev.action or "").lower()
    return ev.operation == "update_policy" or a in ("vaultpatch", "vaultput") or a.endswith(
        "accesspolicies/write")


class AkvAccessPolicyChanged(EventDetector):
    """The vault's access policy (who may read keys and secrets) was changed."""

    id: ClassVar[str] = "akv_access_policy_changed"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _is_access_policy_change(ev):
            return None
        vault = vault_of(ev)
        oids = ev.extra.get("azure.keyvault.access_policy_object_ids") or []
        perms = ev.extra.get("azure.keyvault.access_policy_permissions") or []
        a = (ev.action or "").lower()
        if oids or perms or a.endswith("accesspolicies/write"):
            what = "changed the access policy of"
            detail = (f" for {short_list(oids, 3)}" if oids else "") + (
                f" ({short_list(perms, 4)})" if perms else "")
            tail = " Check which identity gained or lost key/secret permissions."
        else:
            # vaults/write, VaultPut, VaultPatch: creation, tags, network rules, settings or
            # access policies; the record does not say which.
            what, detail = "wrote the configuration of", ""
            tail = (" The record does not say what changed (vault creation, tags, network "
                    "rules, settings or access policies): compare the vault's access policies "
                    "and network rules with the previous version.")
        return finding_for_event(
            ev, f"{who(ev)} {what} vault {vault}{detail} ({ev.action}).{tail}",
            entity=f"vault:{vault}",
            details={"what_changed": "access_policy" if what.startswith("changed") else
                     "unknown", "object_ids": list(oids)})


class AkvAccessPolicyChurn(WindowDetector):
    """Access policy changed repeatedly in a short time by one identity (add-then-remove)."""

    id: ClassVar[str] = "akv_access_policy_churn"
    bucket_seconds: ClassVar[int] = 300

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"threshold": 2, "window_seconds": 3600}

    def select(self, ev: KeyEvent) -> str | None:
        if not _is_access_policy_change(ev):
            return None
        return f"{principal_identity(ev.user_id)}|{vault_of(ev)}"

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"ip": ev.source_ip}

    def gate(self) -> tuple[int, int] | None:
        return (self.params["window_seconds"], self.params["threshold"])

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        principal, vault = entity.rsplit("|", 1)
        for ep in bursts(buckets, self.params["window_seconds"], self.params["threshold"]):
            b = merged(ep)
            yield Finding(
                entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                explanation=(
                    f"{principal} changed the access policy of vault {vault} {b.count} times "
                    f"between {b.first_seen} and {b.last_seen}. Granting access, using it and "
                    "removing it again hides the grant from periodic access reviews."),
                evidence=b.evidence, event_count=b.count, principal=principal,
                details={"source_ips": sorted(b.values.get("ip", set())), "vault": vault})


class AkvAuditLoggingChanged(EventDetector):
    """A vault's diagnostic setting was deleted or rewritten without AuditEvent: the vault's
    audit log stops (the Key Vault counterpart of disabling a Vault audit device)."""

    id: ClassVar[str] = "akv_audit_logging_changed"
    operations: ClassVar[frozenset[str] | None] = frozenset({"admin_other"})

    def match(self, ev: KeyEvent) -> Finding | None:
        a = (ev.action or "").lower()
        if not _akv(ev) or ev.outcome != "success" or not a.startswith(
                "microsoft.insights/diagnosticsettings/"):
            return None
        vault = vault_of(ev)
        enabled = ev.extra.get("azure.keyvault.audit_logs_enabled")
        if a.endswith("/delete"):
            what = ("deleted a diagnostic setting of vault " + vault + ": if it exported the "
                    "AuditEvent category, the vault's key and secret access is no longer "
                    "recorded")
        elif enabled is False:
            what = (f"rewrote a diagnostic setting of vault {vault} so that it no longer "
                    "exports AuditEvent: the vault's audit log stops")
        elif enabled is None:
            what = (f"changed a diagnostic setting of vault {vault}; the record does not say "
                    "whether AuditEvent is still exported or where it goes")
        else:
            return None  # still exports AuditEvent (a new destination or retention)
        return finding_for_event(
            ev, f"{who(ev)} {what} ({ev.action}). Turning off audit logging is how an "
            "intruder hides what comes next.", entity=f"vault:{vault}|diagnostics",
            key_uid=None, severity="high" if enabled is not None or a.endswith("/delete")
            else None,
            details={"audit_logs_enabled": enabled})


RETRIEVAL_ACTIONS: Final[frozenset[str]] = frozenset({"SecretGet", "KeyGet", "CertificateGet"})


class AkvBurstRetrieval(WindowDetector):
    """One identity retrieved many keys/secrets in a short time (default 10 per minute)."""

    id: ClassVar[str] = "akv_burst_retrieval"
    bucket_seconds: ClassVar[int] = 60

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"threshold": 10, "window_seconds": 60, "min_distinct_objects": 3}

    def select(self, ev: KeyEvent) -> str | None:
        if not _akv(ev) or ev.action not in RETRIEVAL_ACTIONS:
            return None
        return principal_identity(ev.user_id)

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"object": ev.key_uid, "ip": ev.source_ip, "vault": vault_of(ev)}

    def gate(self) -> tuple[int, int] | None:
        return (self.params["window_seconds"], self.params["threshold"])

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        for ep in bursts(buckets, self.params["window_seconds"], self.params["threshold"]):
            b = merged(ep)
            objs = b.values.get("object", set())
            if len(objs) < self.params["min_distinct_objects"]:
                continue  # one app re-reading its own secret in a loop is not an exfil sweep
            yield Finding(
                entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                explanation=(
                    f"{entity} retrieved {b.count} keys/secrets ({len(objs)} distinct, e.g. "
                    f"{short_list(objs, 3)}) between {b.first_seen} and {b.last_seen}, above "
                    f"{self.params['threshold']} per {self.params['window_seconds']} s. Looks "
                    "like a sweep of the vault's contents."),
                evidence=b.evidence, event_count=b.count, principal=entity,
                details={"source_ips": sorted(b.values.get("ip", set())),
                         "objects": sorted(objs), "vaults": sorted(b.values.get("vault", set()))})


def _edge_evidence(e: dict[str, Any]) -> Evidence:
    """Edges carry no per-event provenance; point at the edge window instead."""
    return Evidence(e["edge_id"], e["first_seen"], f"edge:{e['window_start']}", 0)


class AkvRareIdentityRead(InventoryDetector):
    """An identity that has (almost) never read a key/secret suddenly reads it."""

    id: ClassVar[str] = "akv_rare_identity_read"
    READ_OPS: ClassVar[frozenset[str]] = frozenset({"export", "describe"})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"baseline_days": 7, "max_reads": 3, "min_established_reads": 20}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        p = self.params
        per_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in edges:
            if e.get("dataset") in AKV_DATASETS and e["operation"] in self.READ_OPS and (
                    e["count"] > e["failures"]):
                per_key[e["key_uid"]].append(e)
        for uid, es in sorted(per_key.items()):
            start = min(e["first_seen"] for e in es)
            by_p: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for e in es:
                by_p[principal_identity(e["principal"])].append(e)
            for principal, pe in sorted(by_p.items()):
                first = min(e["first_seen"] for e in pe)
                reads = sum(e["count"] - e["failures"] for e in pe)
                others = sum(e["count"] - e["failures"] for e in es
                             if principal_identity(e["principal"]) != principal
                             and e["first_seen"] < first)
                if (days_between(start, first) < p["baseline_days"] or reads > p["max_reads"]
                        or others < p["min_established_reads"]):
                    continue
                last = max(e["last_seen"] for e in pe)
                ips = sorted({ip for e in pe for ip in e["source_ips"]})
                yield Finding(
                    entity=f"{principal}|{uid}", first_seen=first, last_seen=last,
                    explanation=(
                        f"{principal} read {uid} {reads} time(s) starting {first}; it never "
                        f"read it during the {days_between(start, first):.0f} days before, "
                        f"while established readers did {others} times. A rare reader of a "
                        "specific secret is how stolen identities harvest credentials."),
                    evidence=[_edge_evidence(e) for e in sorted(pe, key=lambda e: e["first_seen"])],
                    event_count=reads, key_uid=uid, principal=principal,
                    details={"source_ips": ips})


class AkvDailyVolumeAnomaly(InventoryDetector):
    """A vault's daily operation volume far above its robust (median/MAD) baseline."""

    id: ClassVar[str] = "akv_daily_volume_anomaly"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"min_history_days": 7, "z_threshold": 6.0, "min_ratio": 3.0, "min_count": 200}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        p = self.params
        daily: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        top: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for e in edges:
            if e.get("dataset") not in AKV_DATASETS:
                continue
            vault = vault_of_uid(e["key_uid"])
            day = e["window_start"][:10]
            daily[vault][day] += e["count"]
            top[(vault, day)][e["principal"]] += e["count"]
        for vault, series in sorted(daily.items()):
            days = sorted(series)
            for i, day in enumerate(days):
                history = [series[d] for d in days[:i]]
                if len(history) < p["min_history_days"]:
                    continue
                value = series[day]
                z, med = robust_z(history, value)
                if value < p["min_count"] or z < p["z_threshold"] or value < p["min_ratio"] * med:
                    continue
                callers = sorted(top[(vault, day)].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
                who_ = ", ".join(f"{c} ({n})" for c, n in callers)
                yield Finding(
                    entity=f"vault:{vault}|{day}", first_seen=f"{day}T00:00:00.000Z",
                    last_seen=f"{day}T23:59:59.999Z",
                    explanation=(
                        f"Vault {vault} served {value} operations on {day}, against a median of "
                        f"{med:.0f}/day over the previous {len(history)} days (robust z = "
                        f"{z:.1f}). Top callers that day: {who_}."),
                    event_count=value, details={"vault": vault, "robust_z": round(z, 2),
                                                "baseline_median": med,
                                                "top_callers": [c for c, _ in callers]})
