"""Peer groups of principals by what they do (scikit-learn DBSCAN over usage profiles).

A principal's profile is its successful crypto use per (key, operation), log-scaled and
L2-normalised, so volume matters less than which keys it uses for what. Principals whose
profiles lie within `eps` cosine distance of each other form a peer group: a recycled CI
runner or a new pod identity of a known workload does what its predecessors did. DBSCAN has
no random state, and the principals are fed in sorted order, so the grouping is the same on
every run and runner; it is recomputed from the usage graph, which is part of the run's
(and `keytrail watch`'s) state, so live runs group against the same baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN

from detectors.common import principal_identity


def usage_profiles(edges: Iterable[dict[str, Any]], operations: frozenset[str]
                   ) -> dict[str, dict[tuple[str, str], float]]:
    """principal identity -> {(key uid, operation): successful operations}."""
    out: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
    for e in edges:
        if e.get("edge_type", "principal_key") != "principal_key" or e["operation"] not in (
                operations):
            continue
        ok = e["count"] - e["failures"]
        if ok > 0:
            out[principal_identity(e["principal"])][(e["key_uid"], e["operation"])] += ok
    return out


class PeerGroups:
    """DBSCAN peer groups (scikit-learn conventions: parameters in __init__, fit state in
    attributes ending `_`)."""

    def __init__(self, eps: float = 0.1, min_samples: int = 2) -> None:
        self.eps = eps
        self.min_samples = min_samples

    def fit(self, profiles: dict[str, dict[tuple[str, str], float]]) -> PeerGroups:
        self.principals_ = sorted(profiles)
        self.features_ = sorted({f for p in profiles.values() for f in p})
        col = {f: i for i, f in enumerate(self.features_)}
        x = np.zeros((len(self.principals_), len(self.features_)))
        for i, p in enumerate(self.principals_):
            for f, v in profiles[p].items():
                x[i, col[f]] = math.log1p(v)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        self.x_ = x / np.where(norms == 0, 1.0, norms)
        if len(self.principals_) >= self.min_samples:
            self.labels_ = DBSCAN(eps=self.eps, min_samples=self.min_samples,
                                  metric="cosine").fit(self.x_).labels_
        else:
            self.labels_ = np.full(len(self.principals_), -1)
        self.index_ = {p: i for i, p in enumerate(self.principals_)}
        return self

    def peers(self, principal: str) -> list[tuple[str, float]]:
        """Other members of the principal's group with their cosine similarity, closest first."""
        i = self.index_.get(principal)
        if i is None or self.labels_[i] < 0:
            return []
        out = [(p, float(self.x_[i] @ self.x_[j])) for p, j in self.index_.items()
               if j != i and self.labels_[j] == self.labels_[i]]
        return sorted(out, key=lambda t: (-t[1], t[0]))

    def shared_features(self, a: str, b: str, limit: int = 3) -> list[str]:
        """The (key, operation) pairs that make a and b alike, largest contribution first."""
        ia, ib = self.index_[a], self.index_[b]
        contrib = self.x_[ia] * self.x_[ib]
        order = sorted(range(len(self.features_)), key=lambda k: (-contrib[k], k))
        return [f"{self.features_[k][1]} on {self.features_[k][0]}" for k in order[:limit]
                if contrib[k] > 0]
