"""Spread over seeds: the mean and its 95% confidence interval (Student's t, scipy.stats).

A leaderboard difference means something only when it is larger than the seed-to-seed spread,
so every aggregated number is shown as ``mean ± half-width`` of the two-sided 95% t-interval
of the mean over the seeds (``n - 1`` degrees of freedom). One seed has no interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

from scipy import stats

LEVEL = 0.95
MISSING = "–"


@dataclass(frozen=True)
class Spread:
    """Mean of ``n`` values and the half-width of its confidence interval (None for n < 2)."""

    mean: float
    half_width: float | None
    n: int

    def text(self, scale: float = 100.0) -> str:
        """``92.0`` for one value, ``92.0 ± 25.4`` for several (percent points by default)."""
        if self.half_width is None:
            return f"{scale * self.mean:.1f}"
        return f"{scale * self.mean:.1f} ± {scale * self.half_width:.1f}"


def spread(values: Iterable[float | None], level: float = LEVEL) -> Spread | None:
    """Mean and t-interval half-width of the present values; None when there are none."""
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    n = len(present)
    mean = statistics.fmean(present)
    if n < 2:
        return Spread(mean, None, n)
    sem = statistics.stdev(present) / math.sqrt(n)
    return Spread(mean, float(stats.t.ppf((1 + level) / 2, n - 1)) * sem, n)


def spread_text(values: Iterable[float | None]) -> str:
    found = spread(values)
    return MISSING if found is None else found.text()
