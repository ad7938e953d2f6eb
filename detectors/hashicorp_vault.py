"""HashiCorp Vault / OpenBao audit-device detectors (request.path and operation drive them)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final

from detectors.base import Bucket, EventDetector, Finding, WindowDetector
from detectors.common import (
    bursts,
    finding_for_event,
    merged,
    short_list,
    vault_operation,
    vault_path,
    who,
)
from parsers.schema import KeyEvent

VAULT: Final[str] = "hashicorp_vault.audit"
WRITE_OPS: Final[frozenset[str]] = frozenset({"create", "update", "delete", "patch"})


def _vault(ev: KeyEvent) -> bool:
    return ev.dataset == VAULT


def _vault_who(ev: KeyEvent) -> str:
    return who(ev) if (ev.user_id or ev.user_name) else "a token"


class VaultRootTokenUsed(EventDetector):
    """A request was made with a root token (unlimited, unaudited-by-policy power)."""

    id: ClassVar[str] = "vault_root_token_used"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev):
            return None
        if not (ev.extra.get("hashicorp_vault.root_token") is True
                or ev.principal_type == "root_token"):
            return None
        return finding_for_event(
            ev, f"A root token was used for {vault_operation(ev)} {vault_path(ev)} "
            f"({_vault_who(ev)}). Root tokens bypass every policy; they should exist only "
            "during break-glass and be revoked right after.",
            entity=f"root_token|{ev.extra.get('hashicorp_vault.accessor') or ev.session_id}",
            details={"path": vault_path(ev)})


class VaultAuditDeviceChanged(EventDetector):
    """An audit device was disabled, enabled or reconfigured (blinding the audit trail)."""

    id: ClassVar[str] = "vault_audit_device_changed"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev):
            return None
        path = vault_path(ev)
        op = vault_operation(ev)
        if not (path.startswith(("sys/audit/", "sys/config/auditing/")) and op in WRITE_OPS):
            return None
        disabling = op == "delete"
        verb = "disabled" if disabling else "enabled or changed"
        tried = "" if ev.outcome == "success" else " (attempt, refused)"
        return finding_for_event(
            ev, f"{_vault_who(ev)} {verb} audit device {path}{tried}. Removing or redirecting "
            "an audit device is how an intruder stops the record of what follows.",
            severity="critical" if disabling and ev.outcome == "success" else None,
            entity=f"audit|{path}", details={"path": path})


class VaultPolicyChanged(EventDetector):
    """An ACL / RGP / EGP policy was written or deleted."""

    id: ClassVar[str] = "vault_policy_changed"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev) or ev.outcome != "success":
            return None
        path = vault_path(ev)
        op = vault_operation(ev)
        if not (path.startswith(("sys/policy/", "sys/policies/")) and op in WRITE_OPS):
            return None
        return finding_for_event(
            ev, f"{_vault_who(ev)} {'deleted' if op == 'delete' else 'wrote'} Vault policy "
            f"{path}. Policies decide which tokens may use which keys and secrets.",
            entity=f"policy|{path}", details={"path": path})


RISKY_FLAGS: Final[tuple[str, ...]] = ("exportable", "allow_plaintext_backup", "deletion_allowed")


def _flag(ev: KeyEvent, name: str) -> bool:
    for k, v in ev.extra.items():
        if k.endswith("." + name) and (v is True or str(v).lower() == "true"):
            return True
    return False


class VaultTransitKeyMadeExportable(EventDetector):
    """A transit key was made exportable, backup-able in plaintext, or deletable."""

    id: ClassVar[str] = "vault_transit_key_made_exportable"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev) or ev.outcome != "success":
            return None
        path = vault_path(ev)
        if not (path.endswith("/config") and "/keys/" in path) and not (
                ev.operation == "create" and ev.key_provider == "vault_transit"):
            return None
        flags = [f for f in RISKY_FLAGS if _flag(ev, f)]
        if not flags:
            return None
        return finding_for_event(
            ev, f"{_vault_who(ev)} set {', '.join(flags)} on transit key {ev.key_uid or path}. "
            "These settings are one-way for exportable/plaintext backup: the key material can "
            "now leave Vault, or the key can be deleted.",
            severity="high" if flags != ["deletion_allowed"] else None,
            details={"flags": flags})


class VaultTransitKeyExported(EventDetector):
    """Transit key material was exported or backed up (leaves Vault)."""

    id: ClassVar[str] = "vault_transit_key_exported"
    operations: ClassVar[frozenset[str] | None] = frozenset({"export", "backup"})

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev) or ev.outcome != "success":
            return None
        # The parser maps public-key / certificate-chain exports to describe: no secret leaves.
        if ev.key_provider != "vault_transit" or ev.operation not in ("export", "backup"):
            return None
        path = vault_path(ev)
        return finding_for_event(
            ev, f"{_vault_who(ev)} exported transit key material ({path}). Anyone holding the "
            "export can decrypt or sign outside Vault, without audit.",
            details={"path": path})


class VaultTransitKeyDeleted(EventDetector):
    """A transit key was deleted (all ciphertext under it becomes unreadable)."""

    id: ClassVar[str] = "vault_transit_key_deleted"
    operations: ClassVar[frozenset[str] | None] = frozenset({"destroy", "purge"})

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev) or ev.outcome != "success" or ev.key_provider != "vault_transit":
            return None
        if ev.operation not in ("destroy", "purge"):
            return None
        return finding_for_event(
            ev, f"{_vault_who(ev)} deleted transit key {ev.key_uid}. Every ciphertext produced "
            "with it is now undecryptable.")


SEAL_PREFIXES: Final[tuple[str, ...]] = (
    "sys/seal", "sys/unseal", "sys/rekey", "sys/rekey-recovery-key", "sys/generate-root",
    "sys/rotate", "sys/step-down",
)


class VaultSealOrRekey(EventDetector):
    """Seal, unseal, rekey, root-token generation or keyring rotation."""

    id: ClassVar[str] = "vault_seal_or_rekey"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev):
            return None
        path = vault_path(ev)
        if not path.startswith(SEAL_PREFIXES) or vault_operation(ev) not in WRITE_OPS:
            return None
        sev = "critical" if path.startswith("sys/generate-root") else None
        return finding_for_event(
            ev, f"{_vault_who(ev)} called {path} ({vault_operation(ev)}, outcome "
            f"{ev.outcome}). Seal, rekey and root generation change who can open Vault; they "
            "should only happen in a planned ceremony.",
            severity=sev, entity=f"seal|{path.split('/')[1]}", details={"path": path})


class VaultBurstReads(WindowDetector):
    """One entity read many secrets / keys in a short time."""

    id: ClassVar[str] = "vault_burst_reads"
    bucket_seconds: ClassVar[int] = 60

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"threshold": 30, "window_seconds": 60, "min_distinct_paths": 5}

    def select(self, ev: KeyEvent) -> str | None:
        if not _vault(ev) or vault_operation(ev) not in ("read", "list"):
            return None
        if vault_path(ev).startswith(("sys/", "auth/", "identity/")):
            return None
        return ev.user_id or ev.user_name or "unknown"

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"path": vault_path(ev), "ip": ev.source_ip}

    def gate(self) -> tuple[int, int] | None:
        return (self.params["window_seconds"], self.params["threshold"])

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        for ep in bursts(buckets, self.params["window_seconds"], self.params["threshold"]):
            b = merged(ep)
            paths = b.values.get("path", set())
            if len(paths) < self.params["min_distinct_paths"]:
                continue
            yield Finding(
                entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                explanation=(
                    f"Vault entity {entity} read {b.count} paths ({len(paths)}"
                    f"{'+' if len(paths) >= 50 else ''} distinct, e.g. {short_list(paths, 3)}) "
                    f"between {b.first_seen} and {b.last_seen}, above "
                    f"{self.params['threshold']} per {self.params['window_seconds']} s: a "
                    "secrets sweep."),
                evidence=b.evidence, event_count=b.count, principal=entity,
                details={"source_ips": sorted(b.values.get("ip", set())),
                         "paths": sorted(paths)[:20]})


class VaultOrphanTokenCreated(EventDetector):
    """An orphan token (no parent: survives revocation of its creator) was created."""

    id: ClassVar[str] = "vault_orphan_token_created"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _vault(ev) or ev.outcome != "success":
            return None
        path = vault_path(ev)
        orphan = path.startswith("auth/token/create-orphan") or (
            path.startswith("auth/token/create") and (
                _flag(ev, "no_parent") or ev.extra.get("hashicorp_vault.orphan") is True))
        if not orphan:
            return None
        return finding_for_event(
            ev, f"{_vault_who(ev)} created an orphan token via {path}. Orphan tokens outlive "
            "the revocation of their creator: a classic persistence step.",
            entity=f"orphan|{ev.user_id or ev.user_name}", details={"path": path})
