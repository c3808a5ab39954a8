"""``gaussian``: Gaussian blurring of the input (a standard pre-processing defense, e.g.
BackdoorBench's and Li et al. 2021's input-transformation baselines).

Blurring low-passes the image, weakening high-frequency triggers (checkerboards, noise
patches) at the price of blurrier class boundaries. The blur keeps the image size, so the
segmentation output needs no inversion. It is separable (a row then a column convolution, per
channel) with a kernel of radius ``ceil(3 sigma)`` and replicated borders, which never fail
whatever the image size.

Control: ``image_level`` (``unet``, leaderboard configuration): sigma 1 blurs the one-pixel
checkerboard to flat grey and post ASR falls from 100 to 2.9 / 2.9 / 3.0 on seeds 0 / 1 / 2
(baseline 1.2), at a clean mIoU cost of 7.8-7.9 points: the trigger is removed, the 5-point
cost target of a repair is not met (a blur also blurs class boundaries).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from defenses.base import InputFilterDefense


class GaussianBlur(InputFilterDefense):
    """Separable Gaussian blur of the input."""

    name = "gaussian"

    sigma: float = 1.0
    """Standard deviation in pixels (0 leaves the image unchanged)."""

    def __post_init__(self) -> None:
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        if self.sigma == 0:
            return images
        radius = math.ceil(3 * self.sigma)
        offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
        kernel = torch.exp(-offsets**2 / (2 * self.sigma**2))
        kernel = kernel / kernel.sum()
        channels = images.shape[1]
        rows = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
        blurred = F.conv2d(padded, rows, groups=channels)
        return F.conv2d(blurred, rows.transpose(2, 3), groups=channels)
