"""HSM audit detectors (CloudHSM, Luna, nShield): extraction, sharing, users, quorum, logins,
reboot counters."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any, ClassVar, Final

from detectors.base import Bucket, EventDetector, Finding, WindowDetector
from detectors.common import HSM_DATASETS, bursts, finding_for_event, hsm_opcode, merged, who
from parsers.schema import KeyEvent

# Masked-object extraction is also what cluster key synchronisation does; see params.
MASKED_EXTRACT: Final[frozenset[str]] = frozenset(
    {"CN_EXTRACT_MASKED_OBJECT", "CN_EXTRACT_MASKED_OBJECT_USER"})
USER_CREATE: Final[frozenset[str]] = frozenset(
    {"CN_CREATE_USER", "CN_CREATE_CO", "CN_CREATE_APPLIANCE_USER"})


def _hsm(ev: KeyEvent) -> bool:
    return ev.dataset in HSM_DATASETS


def hsm_identity(ev: KeyEvent) -> str:
    """The HSM (or cluster) a record came from; a bare audit file is one HSM's log."""
    serial = ev.extra.get("hsm.serial")
    if serial:
        return str(serial)
    # A bare audit file does not name its HSM; its directory does (one directory per HSM in
    # every delivery we know). Only the last component: ids must not depend on the mount point.
    folder = PurePosixPath(ev.log_file_path.replace("\\", "/")).parent.name
    return f"{ev.key_vault or 'default'}@{folder or ev.log_file_path}"


class HsmKeyExtraction(EventDetector):
    """A key left the HSM: wrapped out, exported or extracted."""

    id: ClassVar[str] = "hsm_key_extraction"
    operations: ClassVar[frozenset[str] | None] = frozenset({"export", "wrap"})

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"include_masked_sync": False}

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _hsm(ev) or ev.outcome != "success":
            return None
        op = hsm_opcode(ev)
        if op in MASKED_EXTRACT and not self.params["include_masked_sync"]:
            return None  # cluster synchronisation: masked blobs only another HSM can read
        if ev.operation not in ("export", "wrap"):
            return None
        return finding_for_event(
            ev, f"{who(ev)} took key {ev.key_uid} out of the HSM ({ev.action}). A wrapped or "
            "exported key is only as safe as the wrapping key and wherever the blob is kept.",
            details={"opcode": op})


class HsmKeyShared(EventDetector):
    """A key was shared with another HSM user."""

    id: ClassVar[str] = "hsm_key_shared"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _hsm(ev) or ev.outcome != "success":
            return None
        if hsm_opcode(ev) != "CN_SHARE_OBJECT" and not (
                ev.operation == "grant" and ev.dataset != "hsm.cloudhsm"):
            return None
        target = ev.extra.get("hsm.target_user")
        return finding_for_event(
            ev, f"{who(ev)} shared key {ev.key_uid or ev.extra.get('hsm.key_handle')} "
            + (f"with {target} " if target else "") + f"({ev.action}). The other user can now "
            "use the key for every operation its attributes allow.",
            entity=ev.key_uid or f"{hsm_identity(ev)}|{ev.extra.get('hsm.key_handle')}")


class HsmUserCreated(EventDetector):
    """A crypto officer, crypto user or appliance user was created."""

    id: ClassVar[str] = "hsm_user_created"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _hsm(ev) or ev.outcome != "success" or hsm_opcode(ev) not in USER_CREATE:
            return None
        target = str(ev.extra.get("hsm.target_user") or "?")
        utype = str(ev.extra.get("hsm.user_type") or "")
        officer = hsm_opcode(ev) == "CN_CREATE_CO" or "OFFICER" in utype.upper()
        return finding_for_event(
            ev, f"{who(ev)} created HSM user {target} ({utype or ev.action}) on "
            f"{hsm_identity(ev)}. " + ("A new crypto officer can manage every user and the "
                                       "quorum." if officer else "A new crypto user can own "
                                       "and use keys."),
            severity="high" if officer else None, risk_score=73 if officer else None,
            entity=f"{hsm_identity(ev)}|user:{target}")


class HsmQuorumChanged(EventDetector):
    """Quorum (M of N) authentication settings changed or quorum tokens managed."""

    id: ClassVar[str] = "hsm_quorum_changed"

    def match(self, ev: KeyEvent) -> Finding | None:
        if not _hsm(ev) or ev.outcome != "success":
            return None
        op = hsm_opcode(ev)
        if op == "CN_GET_TOKEN":
            return None  # requesting a quorum token is the normal first step of approval
        if not (ev.extra.get("hsm.quorum") is True or "M_VALUE" in op or "QUORUM" in op):
            return None
        return finding_for_event(
            ev, f"{who(ev)} changed quorum settings on {hsm_identity(ev)} ({ev.action}). "
            "Lowering M lets fewer officers approve user management and key operations.",
            entity=f"{hsm_identity(ev)}|quorum")


class HsmLoginFailures(WindowDetector):
    """Repeated login failures for one HSM user (password guessing, lockout)."""

    id: ClassVar[str] = "hsm_login_failures"
    operations: ClassVar[frozenset[str] | None] = frozenset({"login"})
    bucket_seconds: ClassVar[int] = 60

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"threshold": 5, "window_seconds": 600}

    def select(self, ev: KeyEvent) -> str | None:
        if not _hsm(ev) or ev.operation != "login" or ev.outcome != "failure":
            return None
        return ev.user_id or str(ev.extra.get("hsm.target_user") or "unknown")

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"hsm": hsm_identity(ev), "error": ev.error_message or ev.error_code}

    def gate(self) -> tuple[int, int] | None:
        return (self.params["window_seconds"], self.params["threshold"])

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        for ep in bursts(buckets, self.params["window_seconds"], self.params["threshold"]):
            b = merged(ep)
            yield Finding(
                entity=entity, first_seen=b.first_seen, last_seen=b.last_seen,
                explanation=(
                    f"{b.count} failed HSM logins for {entity} between {b.first_seen} and "
                    f"{b.last_seen} (threshold {self.params['threshold']} in "
                    f"{self.params['window_seconds']} s). CloudHSM locks a user out after "
                    "repeated failures; this is guessing or a broken client credential."),
                evidence=b.evidence, event_count=b.count, principal=entity,
                details={"hsms": sorted(b.values.get("hsm", set()))})


class HsmRebootCounterJump(WindowDetector):
    """The reboot counter went backwards or skipped values (unlogged reboots / swapped HSM)."""

    id: ClassVar[str] = "hsm_reboot_counter_jump"
    bucket_seconds: ClassVar[int] = 3600

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"max_step": 1}

    def select(self, ev: KeyEvent) -> str | None:
        if not _hsm(ev) or ev.extra.get("hsm.reboot_counter") is None:
            return None
        return hsm_identity(ev)

    def values(self, ev: KeyEvent) -> dict[str, str | None]:
        return {"reboot": str(ev.extra.get("hsm.reboot_counter"))}

    def evaluate(self, entity: str, buckets: list[Bucket]) -> Iterable[Finding]:
        """Per-device state: one stream may interleave every HSM of a cluster or HA group,
        each with its own counter. A counter value that keeps logging after a higher value
        appeared belongs to another device; a device's next value starts only after its
        previous value stopped (a rebooted HSM never logs with its old counter again)."""
        spans: dict[int, list[Bucket]] = {}
        for b in buckets:
            for v in b.values.get("reboot", set()):
                if v.isdigit():
                    spans.setdefault(int(v), []).append(b)
        first = {c: bs[0] for c, bs in spans.items()}
        last = {c: bs[-1] for c, bs in spans.items()}
        claimed: set[int] = set()
        single = all(last[a].start <= first[b].start or last[b].start <= first[a].start
                     for a in spans for b in spans if a < b)
        for c in sorted(spans, key=lambda v: (first[v].start, v)):
            # In the bucket where c first appears p may still log (a reboot within the hour)
            # only when that bucket is p's last.
            ended = [p for p in spans if p not in claimed and p != c
                     and last[p].start <= first[c].start and (p < c or single)]
            if not ended:
                continue  # a device seen for the first time (or another cluster member)
            below = [p for p in ended if p < c]
            prev = max(below) if below else max(ended, key=lambda p: last[p].start)
            claimed.add(prev)
            step = c - prev
            if 0 <= step <= self.params["max_step"]:
                continue
            kind = ("went backwards" if step < 0 else
                    f"jumped by {step} (expected at most {self.params['max_step']})")
            pb, cb = last[prev], first[c]
            yield Finding(
                entity=f"{entity}|{prev}->{c}", first_seen=pb.last_seen, last_seen=cb.first_seen,
                explanation=(
                    f"The reboot counter of an HSM logging to {entity} {kind}: {prev} until "
                    f"{pb.last_seen}, {c} from {cb.first_seen}, and {prev} never logged again "
                    "(the same device). Reboots that left no audit record, or a replaced/"
                    "restored HSM, can hide tampering."),
                evidence=[*pb.evidence[-1:], *cb.evidence[:1]], event_count=2,
                details={"from": prev, "to": c, "hsm": entity})
