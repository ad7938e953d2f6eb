"""Usage graph: principal -> key edges per operation and time window, key -> resource edges.

Edges are mergeable partials so a billion Decrypts become a few thousand edges; every merge
is order-independent so any runner produces identical edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from detectors.base import add_bounded
from parsers.base import stable_id
from parsers.schema import KeyEvent

MAX_IPS: Final[int] = 20
MAX_RESOURCES_PER_KEY: Final[int] = 1000
UNKNOWN_PRINCIPAL: Final[str] = "unknown"


def window_start(ts: str, window: str) -> str:
    """Start of the window holding `ts` ('1h' or '1d'), as an ISO timestamp."""
    if window == "1h":
        return ts[:13] + ":00:00.000Z"
    return ts[:10] + "T00:00:00.000Z"


EdgeKey = tuple[str, str, str, str]  # principal, key uid, operation, window start


@dataclass
class EdgeAccumulator:
    """Mergeable usage edge (principal, key, operation, window)."""

    count: int = 0
    failures: int = 0
    first_seen: str = "9999"
    last_seen: str = ""
    source_ips: set[str] = field(default_factory=set)
    user_name: str | None = None
    principal_type: str | None = None
    principal_account: str | None = None
    key_account: str | None = None
    dataset: str = ""

    def add(self, ev: KeyEvent) -> None:
        self.count += 1
        if ev.outcome == "failure":
            self.failures += 1
        ts = ev.timestamp
        if ts < self.first_seen:  # noqa: PLR1730 (hot path: min() is a call)
            self.first_seen = ts
        if ts > self.last_seen:  # noqa: PLR1730
            self.last_seen = ts
        ip = ev.source_ip
        if ip and ip not in self.source_ips:
            add_bounded(self.source_ips, ip, MAX_IPS)
        if ev.user_name and (self.user_name is None or ev.user_name < self.user_name):
            self.user_name = ev.user_name
        if ev.principal_type and (
            self.principal_type is None or ev.principal_type < self.principal_type
        ):
            self.principal_type = ev.principal_type
        acct = ev.principal_account
        if acct and (self.principal_account is None or acct < self.principal_account):
            self.principal_account = acct
        if ev.key_account and (self.key_account is None or ev.key_account < self.key_account):
            self.key_account = ev.key_account
        if not self.dataset or ev.dataset < self.dataset:
            self.dataset = ev.dataset

    def __reduce__(self) -> tuple[Any, ...]:
        # Partials cross process boundaries (Beam workers): a flat tuple pickles ~10x
        # faster than the instance dict with its set.
        return (_edge, (self.count, self.failures, self.first_seen, self.last_seen,
                        tuple(self.source_ips), self.user_name, self.principal_type,
                        self.principal_account, self.key_account, self.dataset))

    def merge(self, o: EdgeAccumulator) -> EdgeAccumulator:
        self.count += o.count
        self.failures += o.failures
        self.first_seen = min(self.first_seen, o.first_seen)
        self.last_seen = max(self.last_seen, o.last_seen)
        self.source_ips |= o.source_ips
        if len(self.source_ips) > MAX_IPS:
            self.source_ips = set(sorted(self.source_ips)[:MAX_IPS])
        self.user_name = _min_opt(self.user_name, o.user_name)
        self.principal_type = _min_opt(self.principal_type, o.principal_type)
        self.principal_account = _min_opt(self.principal_account, o.principal_account)
        self.key_account = _min_opt(self.key_account, o.key_account)
        self.dataset = min(x for x in (self.dataset, o.dataset) if x) if (
            self.dataset or o.dataset) else ""
        return self

    def retract(self, dup: EdgeAccumulator) -> bool:
        """Un-count duplicate events (pipelines.dedupe); True when nothing is left."""
        self.count -= dup.count
        self.failures = max(0, self.failures - dup.failures)
        return self.count <= 0


def _edge(count: int, failures: int, first_seen: str, last_seen: str, ips: tuple[str, ...],
          user_name: str | None, principal_type: str | None, principal_account: str | None,
          key_account: str | None, dataset: str) -> EdgeAccumulator:
    return EdgeAccumulator(count, failures, first_seen, last_seen, set(ips), user_name,
                           principal_type, principal_account, key_account, dataset)


def _min_opt(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def edge_key(ev: KeyEvent, window: str) -> EdgeKey | None:
    if ev.key_uid is None:
        return None
    return (ev.user_id or UNKNOWN_PRINCIPAL, ev.key_uid, ev.operation,
            window_start(ev.timestamp, window))


def edge_record(k: EdgeKey, acc: EdgeAccumulator, window: str) -> dict[str, Any]:
    principal, key_uid, operation, start = k
    cross = bool(acc.principal_account and acc.key_account
                 and acc.principal_account != acc.key_account)
    return {
        "edge_id": stable_id("edge", principal, key_uid, operation, start),
        "edge_type": "principal_key",
        "principal": principal,
        "principal_name": acc.user_name,
        "principal_type": acc.principal_type,
        "principal_account": acc.principal_account,
        "key_uid": key_uid,
        "key_account": acc.key_account,
        "cross_account": cross,
        "operation": operation,
        "window": window,
        "window_start": start,
        "count": acc.count,
        "failures": acc.failures,
        "first_seen": acc.first_seen,
        "last_seen": acc.last_seen,
        "source_ips": sorted(acc.source_ips),
        "dataset": acc.dataset,
    }


@dataclass
class ResourceAccumulator:
    """Mergeable key -> resource edge (what the key protected)."""

    count: int = 0
    first_seen: str = "9999"
    last_seen: str = ""

    def add(self, ts: str) -> None:
        self.count += 1
        self.first_seen = min(self.first_seen, ts)
        self.last_seen = max(self.last_seen, ts)

    def merge(self, o: ResourceAccumulator) -> ResourceAccumulator:
        self.count += o.count
        self.first_seen = min(self.first_seen, o.first_seen)
        self.last_seen = max(self.last_seen, o.last_seen)
        return self

    def retract(self, dup: ResourceAccumulator) -> bool:
        """Un-count duplicate events (pipelines.dedupe); True when nothing is left."""
        self.count -= dup.count
        return self.count <= 0


def resource_record(key_uid: str, resource: str, acc: ResourceAccumulator) -> dict[str, Any]:
    return {
        "edge_id": stable_id("resource_edge", key_uid, resource),
        "edge_type": "key_resource",
        "key_uid": key_uid,
        "resource": resource,
        "count": acc.count,
        "first_seen": acc.first_seen,
        "last_seen": acc.last_seen,
    }
