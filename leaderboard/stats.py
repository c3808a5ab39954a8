"""Spread over seeds: the mean and the seed range (min to max).

A cell of the leaderboard has few seeds (one to five), so a t-interval of the mean is mostly
its t quantile (4.30 for three seeds) and runs outside [0, 100] whenever the seeds disagree.
Every per-cell number is therefore shown as ``mean (min–max)`` over its ``n`` seeds: the range
is what the seeds actually gave, stays inside the metric's own bounds, and says plainly when
one seed learned the backdoor and another did not. One seed has no range. Whether two
defenses differ is not read off these ranges but from the paired test of
``leaderboard.significance``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

MISSING = "–"


@dataclass(frozen=True)
class Spread:
    """Mean, minimum and maximum of ``n`` values."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, scale: float = 100.0) -> str:
        """``92.0`` for one value, ``92.0 (90.0–94.0)`` for several (percent points by default;
        ``-113.0 (-139.5 to -76.2)`` when the range is negative)."""
        if self.n < 2:
            return fixed(scale * self.mean)
        return f"{fixed(scale * self.mean)} ({range_text(scale * self.low, scale * self.high, 1)})"


def fixed(value: float, digits: int = 1) -> str:
    """``value`` with ``digits`` decimals, never ``-0.0``."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def range_text(low: float, high: float, digits: int) -> str:
    """``0.0–100.0``, or ``-139.5 to -76.2`` when a dash would read as a minus sign."""
    low_text, high_text = fixed(low, digits), fixed(high, digits)
    separator = " to " if low_text.startswith("-") else "–"
    return f"{low_text}{separator}{high_text}"


def spread(values: Iterable[float | None]) -> Spread | None:
    """Mean and range of the present values; None when there are none."""
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return Spread(statistics.fmean(present), min(present), max(present), len(present))


def spread_text(values: Iterable[float | None]) -> str:
    found = spread(values)
    return MISSING if found is None else found.text()


def count_text(flags: Iterable[bool | None]) -> str:
    """``1 of 3``: how many of the known flags are set."""
    known = [bool(f) for f in flags if f is not None]
    return f"{sum(known)} of {len(known)}" if known else MISSING
