"""Detectors whose evidence is per pixel: one shared rule turns a score map into one score per image.

A segmentation model answers per pixel, so TeCo, SCALE-UP, IBD-PSC and Beatrix produce a map
of per-pixel suspicion. How that map becomes one score per image decides what the detector
can see:

- ``mean`` dilutes an attack that changes only the victim's pixels (a car is ~4% of a
  ``synthetic`` scene): the clean majority dominates;
- ``quantile`` (the default, at 0.99) scores the image by a high quantile of its map, so a
  region of at least ``1 - quantile`` of the pixels that behaves suspiciously decides; the
  price is that clean images' least stable pixels (object boundaries) set the clean level;
- ``class_max`` averages the map over the pixels of each *predicted* class and keeps the
  highest class mean: robust to scattered unstable pixels, but a fine-grained trigger makes the
  victim's pixels predicted *as the target*, so they are averaged with every true target pixel.
"""

from __future__ import annotations

import torch

from defenses.base import DetectionDefense

AGGREGATES = ("quantile", "mean", "class_max")


class PixelDetectionDefense(DetectionDefense):
    """A detector with a per-pixel score map, aggregated per image by ``aggregate``."""

    aggregate: str = "quantile"
    """How a per-pixel score map becomes one score per image: quantile, mean or class_max."""
    quantile: float = 0.99
    """The quantile of the map scored by ``aggregate=quantile``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")

    def per_image(self, pixel_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[B,H,W]`` scores (higher = more suspicious) and predicted labels -> ``[B]``."""
        return aggregate(pixel_scores, labels, self.aggregate, self.quantile)


def aggregate(pixel_scores: torch.Tensor, labels: torch.Tensor, how: str, quantile: float) -> torch.Tensor:
    """One score per image from a ``[B,H,W]`` map (see the module docstring for ``how``)."""
    scores = pixel_scores.float().flatten(1)
    if how == "mean":
        return scores.mean(dim=1)
    if how == "quantile":
        rank = 1 + round(quantile * (scores.shape[1] - 1))  # nearest rank
        return scores.kthvalue(rank, dim=1).values
    classes = labels.flatten(1).long()
    width = int(classes.max()) + 1
    sums = torch.zeros(len(scores), width, device=scores.device).scatter_add_(1, classes, scores)
    counts = torch.zeros_like(sums).scatter_add_(1, classes, torch.ones_like(scores))
    means = torch.where(counts > 0, sums / counts.clamp(min=1), -torch.inf)
    return means.max(dim=1).values
