"""Partial triggers: a trigger cut into pieces, of which each poisoned *training* image carries
only a random part, while the *test* trigger is the whole (Qi et al., "Revisiting the Assumption
of Latent Separability for Backdoor Defenses", ICLR 2023: Adap-Blend and Adap-Patch; code
vtu81/backdoor-toolbox, poison_tool_box/adaptive_blend.py and adaptive_patch.py).

Two forms: a blend pattern cut into a ``k x k`` grid with a random subset of ``shown`` pieces
per image (Adap-Blend), and a set of separate patches with one of them per image (Adap-Patch).
The draws are per image, from :mod:`~attacks.parts.draws` keys (the attack's seed and the
image's annotation), where the reference takes them from Python's global ``random`` stream:
here an image gets the same pieces in any batch and on any device.
"""

from __future__ import annotations

import torch

from attacks.parts import draws, triggers


def chosen_pieces(keys: torch.Tensor, pieces: int, shown: int) -> torch.Tensor:
    """``[B, pieces]`` bool: exactly ``shown`` pieces per image, a uniform subset drawn per key
    (the ``shown`` pieces with the smallest draws)."""
    if not 0 <= shown <= pieces:
        raise ValueError(f"cannot show {shown} of {pieces} pieces")
    scores = draws.uniform(keys.view(-1, 1), torch.arange(pieces, device=keys.device).view(1, -1))
    order = scores.argsort(dim=1)
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    return chosen.scatter_(1, order[:, :shown], True)


def grid_mask(chosen: torch.Tensor, per_side: int, height: int, width: int) -> torch.Tensor:
    """``[B,1,H,W]`` float: 1 on the pixels of the chosen cells of a ``per_side x per_side`` grid
    (cells numbered row by row; sides that do not divide evenly give cells one pixel apart)."""
    rows = torch.arange(height, device=chosen.device) * per_side // height
    cols = torch.arange(width, device=chosen.device) * per_side // width
    cell = (rows.view(-1, 1) * per_side + cols.view(1, -1)).flatten()
    return chosen[:, cell].view(-1, 1, height, width).to(torch.float32)


def masked_blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float, mask: torch.Tensor) -> torch.Tensor:
    """Blend ``pattern`` at ``alpha`` where ``mask`` is 1: ``x + alpha m (p - x)``."""
    return images + alpha * mask.to(images) * (pattern.to(images) - images)


def pieced_blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float, keys: torch.Tensor,
                 per_side: int, shown: int) -> torch.Tensor:
    """Adap-Blend's training trigger: ``shown`` random cells of the ``per_side`` grid of ``pattern``."""
    chosen = chosen_pieces(keys, per_side * per_side, shown)
    return masked_blend(images, pattern, alpha, grid_mask(chosen, per_side, *images.shape[-2:]))


def one_each(keys: torch.Tensor, count: int) -> torch.Tensor:
    """``[B]`` long: one of ``count`` parts drawn uniformly per key."""
    draw = draws.uniform(keys, torch.zeros_like(keys))
    return (draw * count).long().clamp(max=count - 1)


def stamp_patches(images: torch.Tensor, patterns: list[torch.Tensor], origins: list[tuple[int, int]],
                  alphas: list[float], which: torch.Tensor | None) -> torch.Tensor:
    """Stamp patch ``j`` (``[3,s,s]`` at top-left ``origins[j]``, opacity ``alphas[j]``) on the
    images whose ``which`` is ``j``; every patch on every image when ``which`` is None."""
    batch = images.shape[0]
    out = images
    for j, (pattern, origin, alpha) in enumerate(zip(patterns, origins, alphas)):
        placed = torch.ones(batch, dtype=torch.bool, device=images.device) if which is None else which == j
        where = torch.tensor(origin, device=images.device).expand(batch, 2)
        out = triggers.stamp(out, pattern, where, placed, alpha)
    return out
