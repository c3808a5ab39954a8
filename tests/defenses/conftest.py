"""Shared tiny fixtures for the defense tests: random uint8 budgets on the CPU."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from torch import nn

from benchmark.engine import TrainConfig
from defenses import CleanBudget
from defenses.training import PoisonedTrainingSet


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP's
    spinning threads make every forward ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_budget() -> Callable[..., CleanBudget]:
    def make(n: int = 8, size: int = 64, num_classes: int = 4, batch_size: int = 4, seed: int = 0) -> CleanBudget:
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
        masks = torch.randint(0, num_classes, (n, size, size), generator=generator)
        names = tuple(f"class{i}" for i in range(num_classes))
        return CleanBudget(images, masks, names, torch.device("cpu"), batch_size)

    return make


TINY_RUN = ["--train-size", "24", "--test-size", "2", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", "--attack", "fine_grained"]
ZOO = ["strip", "teco", "scale_up", "ibd_psc", "beatrix", "spectral", "activation_clustering", "abl"]


@dataclass(frozen=True)
class ZooRun:
    args: list[str]
    """The CLI arguments of the run, less ``--defense`` and ``--workdir``."""
    workdir: Path
    results: dict[str, dict]
    """The result of each defense."""


@pytest.fixture(scope="session")
def zoo_run(tmp_path_factory) -> ZooRun:
    """One CLI grid call runs every detector and training-time defense on one tiny trained
    model (shared by the end-to-end and contract tests)."""
    from benchmark.cli import main

    workdir = tmp_path_factory.mktemp("zoo")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", *TINY_RUN, "--defense", ",".join(ZOO), "--workdir", str(workdir), "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    results = [json.loads(path.read_text()) for path in (workdir / "results").glob("*.json")]
    return ZooRun(TINY_RUN, workdir, {result["defense"]: result for result in results})


class ColourHead(nn.Module):
    """A model whose classifier sees the image itself: segment features are mean colours."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.segmentation_head = nn.Conv2d(3, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(images)


@pytest.fixture
def planted() -> Callable[..., PoisonedTrainingSet]:
    """``n`` 8x8 images, class 0 on the left half and class 1 on the right, grey with noise;
    the class-0 half of images ``red`` is red (planted outliers) and the class-1 half of images
    ``blue`` is bluish (a second, large clean mode)."""

    def make(n: int = 40, red: tuple[int, ...] = (), blue: tuple[int, ...] = ()) -> PoisonedTrainingSet:
        generator = torch.Generator().manual_seed(0)
        images = 128 + 20 * torch.randn(n, 3, 8, 8, generator=generator)
        images[list(red), :, :, :4] += torch.tensor([100.0, -100.0, -100.0]).view(3, 1, 1)
        images[list(blue), :, :, 4:] += torch.tensor([-60.0, -60.0, 80.0]).view(3, 1, 1)
        masks = torch.zeros(n, 8, 8, dtype=torch.long)
        masks[..., 4:] = 1
        return PoisonedTrainingSet(images.clamp(0, 255).to(torch.uint8), masks, ("left", "right"),
                                   torch.device("cpu"), ColourHead, TrainConfig(epochs=1, batch_size=8), 0)

    return make

