"""Cover samples (selection and label axes): training images that carry the trigger but keep
their true labels, so that the trigger alone does not define a cluster in the features
(Qi et al., ICLR 2023, Adap-Blend / Adap-Patch; vtu81/backdoor-toolbox draws them from the
same shuffle as the poisoned images, never overlapping them).

The harness draws the triggered images (poisoned and cover together, ``poison_rate +
cover_rate`` of the training set) and asks :func:`split` which of them are covers; the split
is by a per-image draw of the annotation, so it does not depend on how rows are batched.
"""

from __future__ import annotations

import torch

from attacks.parts import draws

COVER_STREAM = 7919
"""Offset of the cover draw's key seed, apart from the attacks' placement seeds."""


def count(triggered: int, poison_rate: float, cover_rate: float) -> int:
    """How many of ``triggered`` images are covers: the cover share of the two rates."""
    total = poison_rate + cover_rate
    return round(triggered * cover_rate / total) if total > 0 else 0


def draw(masks: torch.Tensor, seed: int) -> torch.Tensor:
    """``[B]`` float in [0, 1): each annotation's cover draw."""
    keys = draws.image_keys(masks, seed + COVER_STREAM)
    return draws.uniform(keys, torch.zeros_like(keys))


def split(draws_: torch.Tensor, covers: int) -> torch.Tensor:
    """``[P]`` bool: the ``covers`` rows with the smallest draws (ties by position)."""
    chosen = torch.zeros(len(draws_), dtype=torch.bool, device=draws_.device)
    chosen[torch.sort(draws_, stable=True).indices[:covers]] = True
    return chosen


def keep_true(truth: torch.Tensor, poisoned: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """The labels a batch of triggered rows trains on: the truth on covers, the poisoned labels elsewhere."""
    return torch.where(cover.view(-1, 1, 1), truth, poisoned)
