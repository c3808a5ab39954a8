"""Shared fixtures of the performance suite (``pytest benchmarks/ --benchmark-only -s``).

Not part of the default test run: ``pyproject.toml`` sets ``testpaths = ["tests"]``.

Every benchmark compares the harness against its floor or a peer measured in the same
process, prints one summary line (visible with ``-s``) and records the numbers in
``benchmark.extra_info``. A missed target is recorded (``*_target_met: False``), not failed;
only grossly-off numbers fail.

Threads: torch runs with ``SEG_BENCH_THREADS`` threads (default 1). On a small, shared CPU
OpenMP's spinning worker threads make small forwards several times slower than one thread,
and the ratios (not the absolute speeds) are what the suite is about.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest
import torch

import models
from attacks import Attack
from benchmark.datasets import Split, synthetic
from benchmark.engine import prepare_model

NUM_CLASSES = 8
IMAGE_SIZE = 64
BATCH = 32


@pytest.fixture(autouse=True)
def torch_state() -> Iterator[int]:
    """Pin the thread count for each benchmark; restore global torch state afterwards
    (``runner.run`` switches on deterministic algorithms)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    wanted = int(os.environ.get("SEG_BENCH_THREADS", "1"))
    torch.set_num_threads(wanted)
    yield wanted
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(scope="session")
def cpu() -> torch.device:
    return torch.device("cpu")


@pytest.fixture(scope="session")
def data() -> Split:
    """256 synthetic 64x64 street scenes (uint8 images, int64 masks, 8 classes)."""
    return synthetic.generate(256, IMAGE_SIZE, seed=0)


@pytest.fixture
def make_unet(cpu: torch.device) -> Callable[[], torch.nn.Module]:
    """The default zoo model, in channels_last on the CPU, from a fixed seed."""

    def make() -> torch.nn.Module:
        torch.manual_seed(0)
        return prepare_model(models.build("unet", NUM_CLASSES), cpu)

    return make


@pytest.fixture(scope="session")
def fine_grained() -> Attack:
    return Attack.registry.get("fine_grained").create({}, class_names=synthetic.CLASS_NAMES)


@pytest.fixture
def report(benchmark, torch_state: int) -> Callable[..., None]:
    """``report(summary_line, **numbers)``: print the line and record the numbers."""

    def record(line: str, **numbers) -> None:
        benchmark.extra_info["threads"] = torch_state
        for key, value in numbers.items():
            benchmark.extra_info[key] = round(value, 6) if isinstance(value, float) else value
        print(f"\n[perf] {line}")

    return record
