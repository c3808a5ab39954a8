"""``scale_up``: SCALE-UP (Guo et al., ICLR 2023, "SCALE-UP: An Efficient Black-box Input-level
Backdoor Detection via Analyzing Scaled Prediction Consistency"), adapted to segmentation.

Amplifying every pixel value of a triggered input (``clip(n * x)``) leaves the backdoor's
prediction in place far more often than a clean input's prediction: the trigger still
dominates. The scaled prediction consistency (SPC) of an input is the fraction of the scaled
copies, ``n`` in ``scales``, whose prediction equals the input's own: high = suspicious.

Segmentation specifics: SPC is computed per pixel (the fraction of scales at which the pixel's
label is unchanged) and an image scores the mean over its pixels (``aggregate=mean``: the
fraction of pixel predictions that survive, the classifier's SPC counted per pixel).

Why not standardised (``standardize=false``, the default): the per-class standardisation of
the paper's data-limited variant compares a pixel with clean pixels *predicted as its class*.
An image-level trigger turns the whole map into the target, and the target (road) is the
class whose clean pixels survive scaling best, so a triggered pixel, standardised by clean
road pixels, looks ordinary or even unstable: with ``standardize=true, aggregate=quantile``
(the committed cells) the detection AUROC on ``image_level`` was 1.0, 0.0, 0.0 on seeds 0, 1,
2, its sign set by how stable road happened to be on each model. The raw SPC has one
direction on every seed. The official code scores the raw SPC (``test.py``), and BackdoorBox
standardises by one global mean and deviation, which does not change a ranking.

Sources read: JunfengGo/SCALE-UP ``test.py`` (SPC: the fraction of the scaled predictions
equal to the original one; scales 3, 5, 7, 9, 11) and BackdoorBox
``core/defenses/SCALE_UP.py`` (``clip(x * n, 0, 1)`` on [0, 1] inputs; the data-limited mean
and deviation over all benign samples). Departure: the threshold is the clean budget's rank
at ``fpr`` (every detector's rule) instead of the fixed ``T = 0.5``.

Measured (``image_level``, ``unet``, leaderboard configuration; seeds 0 / 1 / 2): AUROC 1.00
on every seed, post ASR 0, clean rejection 6.7 / 0.0 / 0.7% at a nominal 5%, mIoU cost
5.8 / 0.0 / 0.5 points. The rejections are the whole cost (a detector changes no prediction;
a rejected image scores as wrong). Seed 0's 6.7% is 10 of 150 test images; on 1,500 fresh
test images the same model and threshold reject 5.9% (5.2 points): a calibration draw that
50 calibration images give with probability 0.20 under exchangeable scores, so no shift
between the budget's training images and unseen ones is needed to explain it.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.toolkit import logits_of
from defenses.pixel_detection import PixelDetectionDefense


class ScaleUp(PixelDetectionDefense):
    """SCALE-UP: reject inputs whose predictions survive amplifying every pixel value."""

    name = "scale_up"

    aggregate: str = "mean"
    """How the per-pixel map becomes one score per image: the mean, the fraction of surviving
    pixel predictions (``quantile`` at 0.99 with standardisation reproduces the committed cells)."""
    standardize: bool = False
    """Standardise each pixel's SPC by clean pixels of its predicted class (off: see above)."""
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
