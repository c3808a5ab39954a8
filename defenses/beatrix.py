"""``beatrix``: Beatrix (Ma et al., NDSS 2023, "Beatrix: Robust Backdoor Detection via Gram
Matrices"), adapted to segmentation.

A triggered input reaches the target class through features whose correlations differ from
those of clean inputs of that class. Beatrix summarises an input's activations of one layer by
Gram matrices of several orders (``G_p = (F^p)(F^p)^T``, taken to the power ``1/p``; the upper
triangle), learns per class robust bounds of every Gram entry on clean data (median +- ``bound``
median absolute deviations), and scores an input by how far its entries fall outside the
bounds of its predicted class: high = suspicious.

Segmentation specifics: the layer is the input of the per-pixel classifier (the penultimate
layer, found as fine-pruning finds it), resized to the image. One Gram vector is computed per
*predicted segment* (the pixels of an image predicted as one class, at least ``min_pixels``
of them) and compared with that class's clean bounds; every pixel gets its segment's
deviation, and the map is standardised per predicted class and aggregated per image
(``defenses.pixel_detection``; ``class_max`` is the largest segment deviation). Half of the
budget sets the bounds, the other half calibrates the threshold. A segment of a class never
predicted on the bounds half, or too small, scores 0.

Departure: the paper flags with a MAD rule on the deviations of clean samples; here, like every
detector, the threshold is the clean budget's quantile at the target false-positive rate.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.plugin import BenchmarkError
from defenses.base import CleanBudget
from defenses.pixel_detection import PixelDetectionDefense
from defenses.training import classifier_input

log = logging.getLogger(__name__)


class Beatrix(PixelDetectionDefense):
    """Beatrix: reject inputs whose feature Gram matrices leave their class's clean bounds."""

    name = "beatrix"

    aggregate: str = "mean"
    """How the per-pixel map becomes one score per image (quantile, mean or class_max). The mean
    here: a segment's deviation covers all its pixels, so a poisoned segment is no small region."""
    orders: int = 8
    """Gram matrices of orders 1..orders."""
    bound: float = 3.0
    """Half-width of a clean bound, in median absolute deviations."""
    min_pixels: int = 16
    """Smallest predicted segment that gets a Gram vector."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.orders < 1:
            raise ValueError(f"orders must be >= 1, got {self.orders}")
        if not self.bound >= 0:
            raise ValueError(f"bound must be >= 0, got {self.bound}")
        if self.min_pixels < 2:
            raise ValueError(f"min_pixels must be >= 2, got {self.min_pixels}")

    def prepare(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        if len(budget) < 2:
            raise BenchmarkError(f"beatrix needs at least 2 budget images, got {len(budget)}")
        reference, calibration = budget.split(0.5)
        self._num_classes = budget.num_classes
        grams: list[torch.Tensor] = []
        for images, _ in reference.batches():
            grams.append(self.segment_grams(model, images)[0].flatten(0, 1))
        vectors = torch.cat(grams)  # [segments * K, features], NaN rows where no segment
        per_class = vectors.view(-1, budget.num_classes, vectors.shape[-1])
        self._median = per_class.nanmedian(dim=0).values  # [K, features]
        self._mad = (per_class - self._median).abs().nanmedian(dim=0).values
        seen = ~self._median.isnan().any(dim=1)
        log.info("beatrix: clean bounds for %d of %d classes", int(seen.sum()), budget.num_classes)
        return calibration

    def pixel_scores(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grams, labels = self.segment_grams(model, images)
        median, mad = self._median.to(grams.device), self._mad.to(grams.device)
        outside = ((grams - median).abs() - self.bound * mad).clamp(min=0) / (mad + 1e-6)
        deviation = outside.mean(dim=-1).nan_to_num(nan=0.0)  # [B, K]
        return deviation.gather(1, labels.flatten(1)).view_as(labels), labels

    def segment_grams(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, K, features]`` Gram vectors of the predicted segments (NaN where a segment is
        absent or smaller than ``min_pixels``) and the predicted labels ``[B,H,W]``."""
        features, logits = classifier_input(model, self._num_classes, images)
        features = F.interpolate(features, size=images.shape[-2:], mode="bilinear", align_corners=False)
        labels = logits.argmax(dim=1)
        flat, classes = features.double().flatten(2), labels.flatten(1)  # [B,D,P], [B,P]
        rows, cols = torch.triu_indices(flat.shape[1], flat.shape[1], device=images.device)
        out = []
        for k in range(self._num_classes):
            weight = (classes == k).double()
            count = weight.sum(dim=1)
            vectors = []
            for p in range(1, self.orders + 1):
                powered = flat**p
                gram = torch.bmm(powered * weight.unsqueeze(1), powered.transpose(1, 2)) / count.clamp(min=1).view(-1, 1, 1)
                gram = gram.sign() * gram.abs() ** (1 / p)
                vectors.append(gram[:, rows, cols])
            vector = torch.cat(vectors, dim=1)
            out.append(torch.where((count >= self.min_pixels).unsqueeze(1), vector, torch.nan))
        return torch.stack(out, dim=1).float(), labels

