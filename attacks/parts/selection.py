"""Selection rules: which training images may be poisoned (``[B]`` bool per batch of masks).
The harness then draws ``poison_rate`` of the whole training set among them."""

from __future__ import annotations

import torch


def containing(masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Images with at least one pixel of any of ``classes``."""
    return torch.isin(masks, classes).flatten(1).any(dim=1)


def co_occurring(masks: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Images containing one of ``first`` and one of ``second``."""
    return containing(masks, first) & containing(masks, second)
