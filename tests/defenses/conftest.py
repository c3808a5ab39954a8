"""Shared tiny fixtures for the defense tests: random uint8 budgets on the CPU."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest
import torch

from defenses import CleanBudget


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
