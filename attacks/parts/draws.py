"""Per-image deterministic random draws, batched on the device.

A scene-dependent placement must give the same answer for an image whether it is drawn
while poisoning the training set or while evaluating, in a batch of 1 or of 256, on a CPU or
a GPU. So draws are not taken from a global generator stream: each image gets a *key*, a
hash of the attack's seed and its own annotation, and every random number is an integer hash
of (key, counter) mapped to [0, 1) - a counter-based generator in a few int64 tensor ops.

Source: the idea of counter-based generators (Salmon et al. 2011, "Parallel random numbers: as
easy as 1, 2, 3", SC'11); the mixing is a multiply-xorshift in the style of SplitMix64's
finaliser (Steele et al., OOPSLA 2014), not Philox: adequate for placing triggers, no more.
"""

from __future__ import annotations

import torch

_MIX1 = 0x5851F42D4C957F2D
_MIX2 = 0x14057B7EF767814F
_MASK = (1 << 62) - 1


def mix(x: torch.Tensor) -> torch.Tensor:
    """An int64 avalanche hash (xorshift-multiply rounds); wraps on overflow, kept non-negative."""
    x = x & _MASK
    x = ((x ^ (x >> 29)) * _MIX1) & _MASK
    x = ((x ^ (x >> 31)) * _MIX2) & _MASK
    return x ^ (x >> 27)


def image_keys(masks: torch.Tensor, seed: int) -> torch.Tensor:
    """``[B]`` int64 keys: a hash of ``seed`` and each ``[H,W]`` annotation."""
    height, width = masks.shape[-2:]
    position = torch.arange(height * width, device=masks.device, dtype=torch.int64)
    weights = mix(position * 0x9E3779B9 + seed + 1)
    return mix((masks.flatten(1).long() + 1) * weights).sum(dim=1) & _MASK


def uniform(keys: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Uniform floats in [0, 1): one for each (key, counter) pair (broadcast)."""
    bits = mix(mix(keys) + counters.long() * 0x2545F4914F6CDD1D)
    return (bits >> 38).float() / float(1 << 24)  # 24 bits: exact in float32 on every device


def pick(eligible: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly drawn True cell of each ``[B,H,W]`` map: (``[B,2]`` row and column,
    ``[B]`` whether the map had any). Maps without one get (0, 0)."""
    batch, height, width = eligible.shape
    cells = torch.arange(height * width, device=eligible.device).view(1, -1)
    scores = uniform(keys.view(-1, 1), cells).masked_fill(~eligible.flatten(1), -1.0)
    best = scores.argmax(dim=1)
    return torch.stack([best // width, best % width], dim=1), eligible.flatten(1).any(dim=1)
