"""Detectors whose evidence is per pixel: one shared rule turns a score map into one score per image.

A segmentation model answers per pixel, so TeCo, SCALE-UP, IBD-PSC and Beatrix produce a map
of per-pixel suspicion (``pixel_scores``). Two shared steps make it one score per image:

1. ``standardize`` (default on): each pixel's score becomes a z-score against the clean
   calibration pixels *predicted as the same class* (their mean and standard deviation), the
   per-class standardisation of SCALE-UP's data-limited variant applied per pixel. Without it,
   a class that is stable by nature (sky stays sky however the image is scaled or corrupted)
   saturates every high quantile, and the victim's pixels, which a trigger makes as stable as
   the target's, do not stand out.
2. ``aggregate``:

   - ``mean`` dilutes an attack that changes only the victim's pixels (a car is ~4% of a
     ``synthetic`` scene): the clean majority dominates;
   - ``quantile`` (the base default, at 0.99) scores the image by a high quantile of its map, so a
     region of at least ``1 - quantile`` of the pixels that behaves suspiciously decides; the
     price is that clean images' least stable pixels (object boundaries) set the clean level;
   - ``class_max`` averages the map over the pixels of each *predicted* class and keeps the
     highest class mean: robust to scattered pixels, but a fine-grained trigger makes the
     victim's pixels predicted *as the target*, so they are averaged with every true target pixel.

A subclass overrides ``pixel_scores(model, images) -> (map [B,H,W], labels [B,H,W])`` (higher
= more suspicious) and, to keep part of the budget for itself, ``prepare`` (the ``setup`` of a
plain detector); the calibration part also gives the standardisation statistics.

Sources: the detectors are TeCo (Liu et al., CVPR 2023), SCALE-UP (Guo et al., ICLR 2023),
IBD-PSC (Hou et al., ICML 2024) and Beatrix (Ma et al., NDSS 2023), each an image classifier's
detector. Departure shared by all four: their papers score one prediction per image; this base
is the segmentation adaptation (per-pixel scores, standardised per predicted class as in
SCALE-UP's data-limited variant, then aggregated), and each module states its own departures.
"""

from __future__ import annotations

import torch
from torch import nn

from defenses.base import CleanBudget, DetectionDefense

AGGREGATES = ("quantile", "mean", "class_max")


class PixelDetectionDefense(DetectionDefense):
    """A detector with a per-pixel score map, standardised per class and aggregated per image."""

    aggregate: str = "quantile"
    """How a per-pixel score map becomes one score per image: quantile, mean or class_max."""
    quantile: float = 0.99
    """The quantile of the map scored by ``aggregate=quantile``."""
    standardize: bool = True
    """Standardise each pixel's score by the clean calibration pixels predicted as its class."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        self._statistics: tuple[torch.Tensor, torch.Tensor] | None = None

    def pixel_scores(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def prepare(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        """Prepare the detector; return the part of the budget that calibrates it."""
        return budget

    def setup(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        calibration = self.prepare(model, budget)
        if self.standardize:
            maps = [self.pixel_scores(model, images) for images, _ in calibration.batches()]
            self._statistics = class_statistics(torch.cat([m for m, _ in maps]), torch.cat([l for _, l in maps]),
                                                calibration.num_classes)
        return calibration

    def score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        scores, labels = self.pixel_scores(model, images)
        if self._statistics is not None:
            mean, std = (s.to(scores.device) for s in self._statistics)
            scores = (scores - mean[labels]) / std[labels]
        return aggregate(scores, labels, self.aggregate, self.quantile)


def class_statistics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``scores`` per predicted class (``[K]`` each); a class
    predicted on fewer than two pixels takes the statistics of all pixels. The deviation is
    floored at 1e-3 of the score scale so a perfectly stable class does not divide by zero."""
    scores, labels = scores.double().flatten(), labels.flatten()
    mean = torch.full((num_classes,), float(scores.mean()), dtype=torch.float64)
    std = torch.full((num_classes,), float(scores.std()) if len(scores) > 1 else 1.0, dtype=torch.float64)
    for k in range(num_classes):
        picked = scores[labels == k]
        if len(picked) > 1:
            mean[k], std[k] = picked.mean(), picked.std()
    floor = 1e-3 * max(float(scores.abs().max()), 1e-6)
    return mean.float(), std.clamp(min=floor).float()


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
