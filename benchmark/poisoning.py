"""Building the poisoned training set and the defender's clean budget, batched on the device."""

from __future__ import annotations

import logging

import torch

from attacks import Attack
from benchmark.datasets import Split
from benchmark.engine import to_input

log = logging.getLogger(__name__)

CHUNK = 256


def select_poison(attack: Attack, masks: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices of the training images to poison: ``poison_rate`` of the whole set, drawn
    among the images ``attack.eligible`` allows (capped, with a warning, if too few are)."""
    eligible = torch.cat([attack.eligible(masks[i:i + CHUNK]).cpu() for i in range(0, len(masks), CHUNK)])
    candidates = eligible.nonzero().flatten()
    wanted = round(attack.poison_rate * len(masks))
    if wanted > len(candidates):
        log.warning("%s: poison rate %.3f asks for %d images but only %d are eligible; poisoning those",
                    attack.name, attack.poison_rate, wanted, len(candidates))
        wanted = len(candidates)
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:wanted]].sort().values


def poison_split(attack: Attack, train: Split, indices: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of the training images and masks (on ``device``) with ``indices`` poisoned."""
    images, masks = train.images.to(device).clone(), train.masks.to(device).clone()
    for start in range(0, len(indices), CHUNK):
        index = indices[start:start + CHUNK].to(device)
        triggered = attack.apply_trigger(to_input(images[index])).contiguous()
        images[index] = (triggered.clamp(0, 1) * 255).round().to(torch.uint8)
        masks[index] = attack.poison_label(masks[index])
    return images, masks


def select_budget(num_train: int, poisoned: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of the defender's clean budget: ``fraction`` of the training split, drawn
    among images that were not poisoned (the defender's data is clean by assumption)."""
    clean = torch.ones(num_train, dtype=torch.bool)
    clean[poisoned] = False
    candidates = clean.nonzero().flatten()
    wanted = max(2, round(fraction * num_train))
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    return candidates[order[:wanted]].sort().values
