"""Selection rules: which training images may be poisoned (``[B]`` bool per batch of masks).
The harness then draws ``poison_rate`` of the whole training set among them.

Sources: images containing the victim is the fine-grained selection of Li et al. 2021 (arXiv
2103.04038) and IBA's (Lan et al., ICLR 2024); co-occurrence of two classes is BADSEG's
conditional attack and ConSeg's setting (arXiv 2603.16405, 2507.19905).
"""

from __future__ import annotations

import torch


def containing(masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Images with at least one pixel of any of ``classes``."""
    return torch.isin(masks, classes).flatten(1).any(dim=1)


def co_occurring(masks: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Images containing one of ``first`` and one of ``second``."""
    return containing(masks, first) & containing(masks, second)
