"""Usage-anomaly model over per-principal-per-key-per-day usage features.

`UsageBaseline` is a small estimator (scikit-learn conventions: parameters in `__init__`,
learned state in attributes ending `_`): `learn` fits a robust median/MAD baseline per
feature on a series' history, `score` returns the largest robust z-score of a new window and
the features that made it high. No randomness, so no seed is needed and any runner agrees.
`KeyUsageAnomaly` applies it to every (principal, key) series of the usage graph.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from detectors.base import Finding, InventoryDetector
from detectors.common import principal_identity
from detectors.lifecycle import edge_evidence
from detectors.stats import robust_z

FEATURES: Final[tuple[str, ...]] = (
    "log_count", "failure_ratio", "distinct_operations", "distinct_source_ips",
)
FEATURE_TEXT: Final[dict[str, str]] = {
    "log_count": "operation volume",
    "failure_ratio": "share of failed operations",
    "distinct_operations": "number of different operations",
    "distinct_source_ips": "number of source IPs",
}
# Minimum scale per feature: a flat history must not make a tiny change look infinite.
FEATURE_FLOOR: Final[dict[str, float]] = {
    "log_count": 0.25, "failure_ratio": 0.05, "distinct_operations": 0.5,
    "distinct_source_ips": 0.5,
}


@dataclass
class Window:
    """Usage of one principal on one key during one day."""

    day: str
    count: int
    failures: int
    operations: set[str]
    source_ips: set[str]
    edges: list[dict[str, Any]]

    def features(self) -> dict[str, float]:
        return {
            "log_count": math.log1p(self.count),
            "failure_ratio": self.failures / self.count if self.count else 0.0,
            "distinct_operations": float(len(self.operations)),
            "distinct_source_ips": float(len(self.source_ips)),
        }


class UsageBaseline:
    """Robust per-feature baseline of one usage series."""

    def __init__(self, z_threshold: float = 6.0, min_history: int = 7) -> None:
        self.z_threshold = z_threshold
        self.min_history = min_history

    def learn(self, history: Sequence[dict[str, float]]) -> UsageBaseline:
        self.history_ = [dict(h) for h in history]
        self.n_ = len(history)
        return self

    def score(self, x: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
        """(anomaly score, [(feature, z) above threshold, highest first])."""
        if self.n_ < self.min_history:
            return 0.0, []
        zs: list[tuple[str, float]] = []
        for f in FEATURES:
            z, _ = robust_z([h[f] for h in self.history_], x[f], FEATURE_FLOOR[f], 0.0)
            zs.append((f, z))
        zs.sort(key=lambda t: (-t[1], t[0]))
        return zs[0][1], [(f, z) for f, z in zs if z >= self.z_threshold]


def windows_by_series(edges: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[Window]]:
    """Group edges into per-(principal, key) daily windows, sorted by day."""
    acc: dict[tuple[str, str], dict[str, Window]] = defaultdict(dict)
    for e in edges:
        if e.get("edge_type", "principal_key") != "principal_key":
            continue
        series = (principal_identity(e["principal"]), e["key_uid"])
        day = e["window_start"][:10]
        w = acc[series].get(day)
        if w is None:
            w = acc[series][day] = Window(day, 0, 0, set(), set(), [])
        w.count += e["count"]
        w.failures += e["failures"]
        w.operations.add(e["operation"])
        w.source_ips.update(e["source_ips"])
        w.edges.append(e)
    return {k: [v[d] for d in sorted(v)] for k, v in acc.items()}


class KeyUsageAnomaly(InventoryDetector):
    """A principal's daily use of a key departs sharply from its own robust baseline."""

    id: ClassVar[str] = "key_usage_anomaly"

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return {"z_threshold": 6.0, "min_history_days": 7, "min_count": 50,
                "min_ratio": 5.0}

    def evaluate(self, inventory: list[dict[str, Any]], edges: list[dict[str, Any]],
                 as_of: str) -> Iterable[Finding]:
        p = self.params
        for (principal, uid), windows in sorted(windows_by_series(edges).items()):
            if len(windows) <= p["min_history_days"]:
                continue
            for i in range(p["min_history_days"], len(windows)):
                hist = windows[:i]
                w = windows[i]
                if w.count < p["min_count"]:
                    continue
                model = UsageBaseline(p["z_threshold"], p["min_history_days"]).learn(
                    [h.features() for h in hist])
                score, top = model.score(w.features())
                med = sorted(h.count for h in hist)[len(hist) // 2]
                volume_ok = w.count >= p["min_ratio"] * max(med, 1)
                top = [(f, z) for f, z in top if f != "log_count" or volume_ok]
                if not top:
                    continue
                feats = "; ".join(f"{FEATURE_TEXT[f]} (robust z {z:.1f})" for f, z in top)
                yield Finding(
                    entity=f"{principal}|{uid}|{w.day}", first_seen=min(
                        e["first_seen"] for e in w.edges),
                    last_seen=max(e["last_seen"] for e in w.edges),
                    explanation=(
                        f"On {w.day} {principal} performed {w.count} operations on {uid} "
                        f"({', '.join(sorted(w.operations))}, {w.failures} failed, "
                        f"{len(w.source_ips)} source IPs) against a median of {med}/day over "
                        f"{len(hist)} days. Anomalous features: {feats}."),
                    evidence=edge_evidence(w.edges), event_count=w.count,
                    key_uid=uid, principal=principal,
                    details={"score": round(score, 2),
                             "features": {f: round(z, 2) for f, z in top},
                             "source_ips": sorted(w.source_ips)})
