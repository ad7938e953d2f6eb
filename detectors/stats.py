"""Robust statistics for baselines: median / MAD z-scores (deterministic, no training seed)."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Final

MAD_SCALE: Final[float] = 1.4826  # MAD -> standard deviation for normal data


def robust_z(history: Sequence[float], value: float, floor: float = 1.0,
             rel_floor: float = 0.1) -> tuple[float, float]:
    """(robust z-score of `value` against `history`, history median).

    The scale never drops below `floor` (or `rel_floor` times the median) so a perfectly
    flat history does not turn a +1 into an infinite score.
    """
    if not history:
        return 0.0, 0.0
    med = float(median(history))
    mad = float(median([abs(h - med) for h in history]))
    scale = max(MAD_SCALE * mad, floor, rel_floor * abs(med))
    return (value - med) / scale, med
