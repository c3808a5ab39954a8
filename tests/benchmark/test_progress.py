"""Progress: a bar on a terminal, log lines at an interval elsewhere."""

import logging

from benchmark.progress import Progress, duration


def test_without_a_terminal_progress_is_logged_at_the_interval(caplog):
    with caplog.at_level(logging.INFO, logger="benchmark.progress"):
        with Progress(10, "train x", "step", items_per_step=32, disable=None, interval=0.0) as bar:
            bar.bar.disable = True  # as tqdm decides when stderr is not a terminal
            bar.note(epoch="1/2")
            for _ in range(10):
                bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 9  # every step but the last (the caller logs the end)
    assert lines[0].startswith("train x: 1/10 steps, epoch 1/2, ") and "images/s, about " in lines[0]


def test_a_bar_disabled_on_purpose_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="benchmark.progress"):
        with Progress(3, "cells", "cell", disable=True, interval=0.0) as bar:
            for _ in range(3):
                bar.update()
    assert not caplog.records


def test_durations_read_as_a_person_would_say_them():
    assert [duration(s) for s in (5, 75, 3725, float("inf"))] == ["5s", "1m15s", "1h02m", "unknown time"]
