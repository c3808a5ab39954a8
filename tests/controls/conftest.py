"""Positive controls (DESIGN section 3): each defense, in a setting where its paper says it
must work, at the leaderboard's training configuration, on three seeds.

They train real models (about 15 s each on a quiet 2-core CPU), so they are marked
``control`` and left out of the default ``pytest``; CI runs them after it (``pytest -m
control``). Trained models are shared through one session workdir (``BENCH_CONTROL_WORKDIR``
reuses a persistent one, e.g. while developing a defense); results always go to a fresh
folder, since a cell's key names the defense and its parameters but not its code.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.runner import RunSpec, run

SEEDS = (0, 1, 2)
LEADERBOARD_DATA = DatasetConfig(train_size=1000, test_size=150)
LEADERBOARD_TRAIN = TrainConfig(epochs=7)


@pytest.fixture(scope="session")
def control_workdir(tmp_path_factory) -> Path:
    shared = os.environ.get("BENCH_CONTROL_WORKDIR")
    return Path(shared) if shared else tmp_path_factory.mktemp("controls")


@pytest.fixture(scope="session")
def control(control_workdir, tmp_path_factory) -> Callable[..., dict[str, Any]]:
    """``control(attack, defense, seed, **defense_params)`` -> the cell's result record at the
    leaderboard's configuration on the default model."""
    results = tmp_path_factory.mktemp("control-results")

    def cell(attack: str, defense: str, seed: int, model: str = "unet", **defense_params: Any) -> dict[str, Any]:
        spec = RunSpec(attack=attack, defense=defense, model=model, defense_params=defense_params, seed=seed,
                       dataset=dataclasses.replace(LEADERBOARD_DATA), train=LEADERBOARD_TRAIN, device="cpu",
                       workdir=str(control_workdir), results_dir=str(results))
        return run(spec)

    return cell
