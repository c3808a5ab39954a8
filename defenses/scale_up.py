"""``scale_up``: SCALE-UP (Guo et al., ICLR 2023, "SCALE-UP: An Efficient Black-box Input-level
Backdoor Detection via Analyzing Scaled Prediction Consistency"), adapted to segmentation.

Amplifying every pixel value of a triggered input (``clip(n * x)``) leaves the backdoor's
prediction in place far more often than a clean input's prediction: the trigger still
dominates. The scaled prediction consistency (SPC) of an input is the fraction of the scaled
copies, ``n`` in ``scales``, whose prediction equals the input's own: high = suspicious.

Segmentation specifics: SPC is computed per pixel (the fraction of scales at which the pixel's
label is unchanged), standardised by the clean pixels of its predicted class (the paper's
data-limited variant, which standardises by per-class statistics of benign samples; on by
default, ``standardize=false`` gives the plain SPC) and aggregated per image by ``aggregate``
(``defenses.pixel_detection``). The scales are the official code's.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.toolkit import logits_of
from defenses.pixel_detection import PixelDetectionDefense


class ScaleUp(PixelDetectionDefense):
    """SCALE-UP: reject inputs whose predictions survive amplifying every pixel value."""

    name = "scale_up"

    scales: tuple[float, ...] = (3.0, 5.0, 7.0, 9.0, 11.0)
    """Factors the pixel values are multiplied by (then clipped to [0, 1])."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.scales or any(not s > 1 for s in self.scales):
            raise ValueError(f"scales must be a non-empty list of factors > 1, got {self.scales}")

    def pixel_scores(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = logits_of(model, images).argmax(dim=1)
        kept = torch.zeros(labels.shape, device=images.device)
        for factor in self.scales:
            kept += logits_of(model, (images * factor).clamp(0, 1)).argmax(dim=1) == labels
        return kept / len(self.scales), labels
