"""AWS KMS rule detectors over CloudTrail events (event.action is the CloudTrail eventName)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Final

from detectors.base import Bucket, EventDetector, Finding, WindowDetector
from detectors.common import (
    bursts,
    epoch_ms,
    finding_for_event,
    key_ref,
    merged,
    principal_identity,
    short_list,
    who,
)
from parsers.schema import KeyEvent

CT: Final[str] = "aws.cloudtrail"
_ACCOUNT_IN: Final = re.compile(r"(?<![\d])(\d{12})(?![\d])")
_SERVICE_INFRA: Final = re.compile(r"^\d{12}:aws:")  # e.g. 111122223333:aws:ec2-infrastructure


def _ok(ev: KeyEvent, *actions: str) -> bool:
    return ev.dataset == CT and ev.outcome == "success" and ev.action in actions


def accounts_in(principals: Iterable[str]) -> set[str]:
    """12-digit account ids named by policy / grantee principals ('*' is not an account)."""
    out: set[str] = set()
    for p in principals:
        out.update(_ACCOUNT_IN.findall(str(p)))
    return out


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x) for x in v]
    return [str(v)]


class KmsKeyDisabledOrDeletionScheduled(EventDetector):
    """A customer key was disabled or scheduled for deletion (data becomes unreadable)."""

    id: ClassVar[str] = "kms_key_disabled_or_deletion_scheduled"
    operations: ClassVar[frozenset[str] | None] = frozenset({"disable", "schedule_deletion"})

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _ok(ev, "DisableKey", "ScheduleKeyDeletion"):
            return None
        if ev.action == "ScheduleKeyDeletion":
            when = f", deletion date {ev.key_deletion_date}" if ev.key_deletion_date else ""
            return finding_for_event(
                ev, f"{who(ev)} scheduled KMS key {key_ref(ev)} for deletion{when}. Once the "
                "waiting period ends every ciphertext under it is unrecoverable.",
                severity="high", risk_score=73)
        return finding_for_event(
            ev, f"{who(ev)} disabled KMS key {key_ref(ev)}; every Decrypt with it now fails.")


class KmsImportedKeyMaterialChanged(WindowDetector):
    """Key material imported into, or deleted from, a key with origin EXTERNAL.

    The first import within `initial_import_hours` of CreateKey is part of creating a
    bring-your-own-key key (the key has no material before it) and is not reported.
    """

    id: ClassVar[str] = "kms_imported_key_material_changed"
    operations: ClassVar[frozenset[str] | None] = frozenset({"import", "destroy", "create"})
    bucket_seconds: ClassVar[int] = 3600

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"initial_import_hours": 1}

    def select(self, ev: KeyEvent) -> str | None:
        if ev.dataset != CT or ev.outcome != "success" or not ev.key_uid:
            return None
        if ev.action in ("ImportKeyMaterial", "DeleteImportedKeyMaterial") or (
                ev.action == "CreateKey" and (ev.key_origin or "").upper() == "EXTERNAL"):
            return ev.key_uid
        return None

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"action": ev.action, "who": ev.user_id, "ip": ev.source_ip,
                "expires": ev.key_expires_at}

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        window_ms = self.params["initial_import_hours"] * 3_600_000
        created = [epoch_ms(b.start) for b in buckets if "CreateKey" in b.values.get("action", ())]
        for b in buckets:
            acts = b.values.get("action", set())
            who_ = short_list(b.values.get("who", set()), 3)
            details = {"source_ips": sorted(b.values.get("ip", set()))}
            if "DeleteImportedKeyMaterial" in acts:
                yield Finding(
                    entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                    explanation=(f"{who_} deleted the imported key material of {entity}; the "
                                 "key is unusable until the same material is imported again."),
                    evidence=b.evidence, event_count=b.count, key_uid=entity,
                    severity="high", risk_score=73, details=details)
            elif "ImportKeyMaterial" in acts:
                start = epoch_ms(b.start)
                if any(start - window_ms <= c <= start for c in created):
                    continue  # initial import of a new BYOK key
                exp = short_list(b.values.get("expires", set()))
                yield Finding(
                    entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                    explanation=(f"{who_} imported key material into existing key {entity}"
                                 + (f" (material expires {exp})" if exp else "") + ". Whoever "
                                 "holds the imported material can decrypt data outside AWS; "
                                 "confirm the import was planned."),
                    evidence=b.evidence, event_count=b.count, key_uid=entity, details=details)


def _policy_outsiders(ev: KeyEvent, trusted: list[str]) -> tuple[bool, set[str]]:
    public = bool(ev.extra.get("aws.cloudtrail.policy_public"))
    principals = _as_list(ev.extra.get("aws.cloudtrail.policy_principals"))
    own = {a for a in (ev.key_account, ev.cloud_account_id) if a}
    foreign = accounts_in(principals) - own - set(trusted)
    return public, foreign


class KmsKeyPolicyChanged(EventDetector):
    """The key policy was replaced (without opening it; see kms_key_policy_opened)."""

    id: ClassVar[str] = "kms_key_policy_changed"
    operations: ClassVar[frozenset[str] | None] = frozenset({"update_policy"})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"trusted_accounts": []}

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _ok(ev, "PutKeyPolicy"):
            return None
        public, foreign = _policy_outsiders(ev, self.params["trusted_accounts"])
        if public or foreign:
            return None  # kms_key_policy_opened reports it with the right severity
        return finding_for_event(
            ev, f"{who(ev)} replaced the key policy of {key_ref(ev)}. The key policy is the "
            "root of access to the key; review the new statements.")


class KmsKeyPolicyOpened(EventDetector):
    """A key policy now allows Principal '*' or principals of other accounts."""

    id: ClassVar[str] = "kms_key_policy_opened"
    operations: ClassVar[frozenset[str] | None] = frozenset({"update_policy", "create"})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"trusted_accounts": []}

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _ok(ev, "PutKeyPolicy", "CreateKey"):
            return None
        public, foreign = _policy_outsiders(ev, self.params["trusted_accounts"])
        if not (public or foreign):
            return None
        parts = []
        if public:
            parts.append("Principal '*' without a restricting condition")
        if foreign:
            parts.append(f"principals of other accounts ({short_list(foreign)})")
        return finding_for_event(
            ev, f"{who(ev)} set a key policy on {key_ref(ev)} that allows "
            + " and ".join(parts) + ". Anyone matching can use or manage the key.",
            severity="critical" if public else None,
            details={"public": public, "foreign_accounts": sorted(foreign)})


def _grantee_expected(grantee: str, key_account: str | None, params: dict[str, Any]) -> bool:
    import fnmatch

    if grantee.endswith(".amazonaws.com") or _SERVICE_INFRA.match(grantee):
        return True  # AWS service principals and service infrastructure (ec2-infrastructure)
    accounts = accounts_in([grantee])
    if grantee == "*" or (accounts and key_account and accounts - {key_account}
                          - set(params["trusted_accounts"])):
        return False
    expected = params["expected_grantees"]
    return not expected or any(fnmatch.fnmatchcase(grantee, g) for g in expected)


class KmsGrantToUnexpectedPrincipal(EventDetector):
    """A grant gives another account, '*' or a non-allow-listed principal use of the key."""

    id: ClassVar[str] = "kms_grant_to_unexpected_principal"
    operations: ClassVar[frozenset[str] | None] = frozenset({"grant"})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"trusted_accounts": [], "expected_grantees": []}

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _ok(ev, "CreateGrant"):
            return None
        grantee = str(ev.extra.get("aws.cloudtrail.grantee_principal") or "")
        if not grantee or _grantee_expected(grantee, ev.key_account, self.params):
            return None
        ops = short_list(_as_list(ev.extra.get("aws.cloudtrail.grant_operations")), 8)
        return finding_for_event(
            ev, f"{who(ev)} granted {grantee} use of {key_ref(ev)}"
            + (f" for {ops}" if ops else "") + ". Grants bypass the key policy review; "
            "the grantee is outside the key's account or not an expected grantee.",
            details={"grantee": grantee})


ENCRYPT_OPS: Final[frozenset[str]] = frozenset({"encrypt", "reencrypt", "generate_data_key"})


class KmsCrossAccountKeyEncryption(EventDetector):
    """Data in this account encrypted under a key owned by another account (ransomware)."""

    id: ClassVar[str] = "kms_cross_account_key_encryption"
    operations: ClassVar[frozenset[str] | None] = ENCRYPT_OPS

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"trusted_accounts": []}

    def match(self, ev: KeyEvent) -> Finding | None:
        # The normalized operation, not KMS event names: the calling service's record (an S3
        # CopyObject / PutObject naming another account's key) is the same encryption.
        if ev.dataset != CT or ev.outcome != "success" or ev.operation not in ENCRYPT_OPS:
            return None
        uid = ev.key_destination_uid if ev.operation == "reencrypt" and ev.key_destination_uid \
            else ev.key_uid
        key_acct = accounts_in([uid]) if uid else set()
        mine = {a for a in (ev.cloud_account_id, ev.principal_account) if a}
        if not key_acct or not mine or key_acct & mine or key_acct & set(
                self.params["trusted_accounts"]):
            return None
        ent = f"{principal_identity(ev.user_id)}|{uid}"
        return finding_for_event(
            ev, f"{who(ev)} in account {short_list(mine)} encrypted data ({ev.action}) with "
            f"{uid}, a key owned by account {short_list(key_acct)}. Whoever controls that key "
            "decides whether this data can ever be read again: the KMS ransomware pattern.",
            entity=ent, key_uid=uid)


class CloudTrailKmsLoggingStopped(EventDetector):
    """A trail stopped, deleted, or its event selectors changed so that it no longer records
    KMS events (StopLogging, DeleteTrail, PutEventSelectors)."""

    id: ClassVar[str] = "cloudtrail_kms_logging_stopped"
    operations: ClassVar[frozenset[str] | None] = frozenset({"admin_other"})

    def match(self, ev: KeyEvent) -> Finding | None:
        if ev.dataset != CT or ev.outcome != "success" or ev.provider != "cloudtrail.amazonaws.com":
            return None
        if ev.extra.get("aws.cloudtrail.kms_logged") is not False:
            return None  # the new selectors still record KMS management events
        trail = ev.resource or "a trail the record does not name"
        what = {"StopLogging": f"stopped logging on trail {trail}",
                "DeleteTrail": f"deleted trail {trail}",
                "PutEventSelectors": f"changed the event selectors of trail {trail} so that it "
                "no longer records KMS management events (Decrypt, GenerateDataKey, key policy "
                "changes)"}.get(ev.action or "", f"changed trail {trail}")
        return finding_for_event(
            ev, f"{who(ev)} {what} ({ev.action}). If no other trail records KMS in this "
            "account and region, key use and key administration are no longer audited.",
            entity=f"trail:{trail}", key_uid=None, details={"trail": trail})


DENIAL_CODES: Final[tuple[str, ...]] = (
    "AccessDenied", "AccessDeniedException", "DisabledException", "KMSInvalidStateException",
)


class KmsDeniedBurst(WindowDetector):
    """Many AccessDenied / DisabledException / KMSInvalidStateException from one principal."""

    id: ClassVar[str] = "kms_denied_burst"
    bucket_seconds: ClassVar[int] = 60

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"threshold": 10, "window_seconds": 300, "error_codes": list(DENIAL_CODES)}

    def select(self, ev: KeyEvent) -> str | None:
        if ev.dataset != CT or ev.outcome != "failure":
            return None
        if (ev.error_code or "") not in self.params["error_codes"]:
            return None
        return principal_identity(ev.user_id)

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"key": ev.key_uid, "code": ev.error_code, "ip": ev.source_ip,
                "action": ev.action}

    def gate(self) -> tuple[int, int] | None:
        return (self.params["window_seconds"], self.params["threshold"])

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        for ep in bursts(buckets, self.params["window_seconds"], self.params["threshold"]):
            b = merged(ep)
            keys = b.values.get("key", set())
            yield Finding(
                entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                explanation=(
                    f"{entity} was refused by KMS {b.count} times between {b.first_seen} and "
                    f"{b.last_seen} ({short_list(b.values.get('code', set()))}) on "
                    f"{len(keys)} key(s): {short_list(keys, 3)}. Threshold: "
                    f"{self.params['threshold']} in {self.params['window_seconds']} s. "
                    "Typical of credential misuse probing keys, or of a workload broken by a "
                    "disabled key."),
                evidence=b.evidence, event_count=b.count, principal=entity,
                key_uid=min(keys) if len(keys) == 1 else None,
                details={"source_ips": sorted(b.values.get("ip", set())),
                         "error_codes": sorted(b.values.get("code", set())),
                         "keys": sorted(keys)})
