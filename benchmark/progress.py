"""Progress of long work: a tqdm bar on a terminal, a log line at a modest interval elsewhere.

tqdm draws only on a terminal (``disable=None``); with stderr in a file (a nohup'd grid, CI)
a training would otherwise be silent for many minutes. There the same progress is logged
every ``LOG_INTERVAL`` seconds: how far, how fast, and how long is left.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0
"""Seconds between two progress lines when no bar is drawn."""


class Progress:
    """``update()`` after each step; ``note(**fields)`` for what the bar shows beside it (epoch, loss)."""

    def __init__(self, total: int, desc: str, unit: str, items_per_step: int = 0, item_unit: str = "images",
                 disable: bool | None = None, interval: float = LOG_INTERVAL) -> None:
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=disable)
        self.total, self.desc, self.unit = total, desc, unit
        self.items_per_step, self.item_unit = items_per_step, item_unit
        self.interval = interval
        self.quiet = disable is True  # a bar disabled on purpose is not replaced by log lines
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.start = self.last_line = time.perf_counter()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def note(self, **fields: Any) -> None:
        self.fields.update(fields)
        self.bar.set_postfix(**fields)

    def update(self, steps: int = 1) -> None:
        self.done += steps
        self.bar.update(steps)
        now = time.perf_counter()
        if self.bar.disable and not self.quiet and now - self.last_line >= self.interval and self.done < self.total:
            self.last_line = now
            log.info(self.line(now - self.start))

    def line(self, elapsed: float) -> str:
        rate = self.done / elapsed if elapsed > 0 else 0.0
        speed = (f"{rate * self.items_per_step:.0f} {self.item_unit}/s" if self.items_per_step
                 else f"{rate:.2f} {self.unit}/s")
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        fields = "".join(f", {k} {v}" for k, v in self.fields.items())
        return f"{self.desc}: {self.done}/{self.total} {self.unit}s{fields}, {speed}, about {duration(left)} left"


def duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
