"""Small pure helpers shared by detectors: vendor field access, time, bursts over buckets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from detectors.base import Bucket, Evidence, Finding, hot_flags
from parsers.schema import KeyEvent

HSM_DATASETS: Final[frozenset[str]] = frozenset({"hsm.cloudhsm", "hsm.luna", "hsm.nshield"})
DAY_MS: Final[int] = 86_400_000
_ASSUMED_ROLE: Final = re.compile(r"^arn:(aws[\w-]*):sts::(\d+):assumed-role/([^/]+)/.+$")


@lru_cache(maxsize=4096)
def epoch_ms(ts: str) -> int:
    """keytrail's own 'YYYY-MM-DDTHH:MM:SS.mmmZ' (or a prefix of it) -> epoch ms."""
    dt = datetime.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = ts[20:23] if len(ts) >= 23 and ts[19] == "." else "0"
    return int(dt.timestamp()) * 1000 + int(frac or 0)


def days_between(a: str, b: str) -> float:
    """b - a in days (fractional)."""
    return (epoch_ms(b) - epoch_ms(a)) / DAY_MS


def hsm_opcode(ev: KeyEvent) -> str:
    """The vendor opcode / command name without its hex suffix, upper-case.

    CloudHSM logs 'CN_LOGIN (0xd)'; parsers may keep it in event.action or hsm.opcode.
    """
    raw = ev.action or ev.extra.get("hsm.opcode") or ""
    return str(raw).split(" (", 1)[0].strip().upper()


def vault_path(ev: KeyEvent) -> str:
    """Vault request.path ('' when absent), without a leading slash."""
    raw = ev.extra.get("hashicorp_vault.path")
    if raw is None:
        raw = ev.resource if ev.dataset == "hashicorp_vault.audit" and ev.resource else ""
    return str(raw).lstrip("/")


def vault_operation(ev: KeyEvent) -> str:
    """Vault request.operation (create, read, update, delete, list, ...)."""
    op = ev.extra.get("hashicorp_vault.operation")
    if op is None:
        # Some parsers put the verb in event.action as 'update transit/keys/x'.
        op = (ev.action or "").split(" ", 1)[0]
    return str(op).lower()


@lru_cache(maxsize=65536)
def principal_identity(user_id: str | None) -> str:
    """Stable identity for baselines: an AWS role session collapses to its role ARN."""
    if not user_id:
        return "unknown"
    m = _ASSUMED_ROLE.match(user_id)
    if m:
        return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return user_id


def is_aws_service(ev: KeyEvent) -> bool:
    """The call was made by an AWS service on the user's behalf (or by AWS itself)."""
    return ev.principal_type == "AWSService" or bool(ev.extra.get("aws.cloudtrail.invoked_by"))


def finding_for_event(ev: KeyEvent, explanation: str, **kw: Any) -> Finding:
    """A finding about one event: entity = principal|key (or the key, the principal),
    evidence = the event.

    The principal is part of the entity so that signals of different identities on one key
    never merge into one: the alert tier judges each identity's routine separately (a
    nightly backup job and an intruder backing up the same key the same day)."""
    entity = kw.pop("entity", None) or (
        f"{principal_identity(ev.user_id)}|{ev.key_uid}" if ev.key_uid and ev.user_id else
        ev.key_uid or ev.user_id or ev.event_id)
    details = kw.pop("details", {})
    if ev.source_ip:
        details.setdefault("source_ips", [ev.source_ip])
    details.setdefault("action", ev.action)
    return Finding(
        entity=entity,
        first_seen=ev.timestamp,
        last_seen=ev.timestamp,
        explanation=explanation,
        evidence=[Evidence.of(ev)],
        event_count=1,
        key_uid=kw.pop("key_uid", ev.key_uid),
        principal=kw.pop("principal", ev.user_id),
        details=details,
        **kw,
    )


def key_ref(ev: KeyEvent) -> str:
    """The key for explanations: its uid, else what the record does say about it."""
    if ev.key_uid:
        return ev.key_uid
    named = ev.key_alias or ev.key_name
    where = " ".join(x for x in (
        f"account {ev.key_account or ev.cloud_account_id}"
        if ev.key_account or ev.cloud_account_id else "",
        f"region {ev.key_region or ev.cloud_region}" if ev.key_region or ev.cloud_region else "",
        f"vault {ev.key_vault}" if ev.key_vault else "") if x)
    if named:
        return f"the key named {named}" + (f" in {where}" if where else "")
    return "a key the record does not identify" + (f" (in {where})" if where else "")


def who(ev: KeyEvent) -> str:
    """Readable principal for explanations."""
    name = ev.user_name or ev.user_id or "an unknown principal"
    if ev.user_id and ev.user_name and ev.user_name not in ev.user_id:
        name = f"{ev.user_name} ({ev.user_id})"
    src = f" from {ev.source_ip}" if ev.source_ip else ""
    return name + src


def bursts(buckets: list[Bucket], window_seconds: int, threshold: int,
           use_failures: bool = False) -> Iterator[list[Bucket]]:
    """Episodes of buckets where some `window_seconds` span holds >= `threshold` counts.

    `buckets` are sorted by start; consecutive triggering spans merge into one episode so a
    long burst yields one finding, not one per minute.
    """
    starts = [epoch_ms(b.start) for b in buckets]
    vals = [b.failures if use_failures else b.count for b in buckets]
    width = window_seconds * 1000
    hot = hot_flags(starts, vals, width, threshold)
    episode: list[Bucket] = []
    last_end = -1
    for i, b in enumerate(buckets):
        if not hot[i]:
            continue
        if episode and starts[i] > last_end + width:
            yield episode
            episode = []
        episode.append(b)
        last_end = starts[i]
    if episode:
        yield episode


def merged(episode: Iterable[Bucket]) -> Bucket:
    """One bucket holding the whole episode (counts, values, earliest evidence)."""
    items = list(episode)
    out = Bucket(start=items[0].start)
    for b in items:
        out.merge(Bucket(start=b.start, count=b.count, failures=b.failures,
                         first_seen=b.first_seen, last_seen=b.last_seen,
                         evidence=list(b.evidence),
                         values={k: set(v) for k, v in b.values.items()}))
    return out


def short_list(values: Iterable[str], limit: int = 5) -> str:
    vs = sorted(values)
    head = ", ".join(vs[:limit])
    return head + (f" and {len(vs) - limit} more" if len(vs) > limit else "")
