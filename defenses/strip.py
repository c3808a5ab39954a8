"""``strip``: STRIP (Gao et al. 2019, "STRIP: A Defence Against Trojan Attacks on Deep Neural
Networks"), adapted to segmentation.

A backdoored model keeps predicting the target wherever the trigger survives, however the rest
of the input is perturbed; a clean input blended with other images yields uncertain
predictions. STRIP blends each input with ``n`` clean overlay images and measures the entropy
of the predictions: low entropy is suspicious.

Segmentation specifics: the entropy is per pixel (of the softmax over classes), averaged over
the ``n`` blends into an entropy map. ``global`` scores an image by the mean of the map (suits
image-level attacks that flip the whole scene); ``local`` by a low quantile of it, so that a
small confidently-flipped region (a fine-grained attack on one class) is not averaged away.
The score is the negated entropy, so higher means more suspicious. Half of the budget is the
overlay pool; the other half calibrates the rejection threshold. All ``B x n`` blends of a
batch go through the model in forwards of at most ``chunk`` images.

The blend: the paper's code superimposes with ``cv2.addWeighted(x, 1, overlay, 1, 0)``, a
saturating sum in which the trigger keeps its full strength (``blend=sum``, the default). The
first version of this defense blended convexly, ``(1 - alpha) * x + alpha * overlay``
(``blend=convex``), which halves the trigger at alpha 0.5; it is kept as an option, and the
committed leaderboard's strip cells were computed with it. ``direction=both`` (not in the
paper) scores the distance of an input's entropy from the median entropy of the calibration
images, in either direction, for backdoors that make blends *less* confident than clean ones;
the median comes from clean budget images only.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from benchmark.toolkit import logits_of
from benchmark.plugin import BenchmarkError, Plugin
from defenses.base import CleanBudget, DetectionDefense

log = logging.getLogger(__name__)

VARIANTS = ("global", "local")
BLENDS = ("sum", "convex")
DIRECTIONS = ("low", "both")


class Strip(DetectionDefense):
    """STRIP: reject inputs whose predictions stay confident under blending with clean images."""

    name = "strip"

    n: int = 32
    """Overlay images blended with each input."""
    blend: str = Plugin.added("sum", legacy="convex")
    """``sum``: ``min(1, input + overlay)``, the paper's code; ``convex``: ``(1 - alpha) * input + alpha * overlay``."""
    alpha: float = 0.5
    """Weight of the overlay in a ``convex`` blend."""
    direction: str = Plugin.added("low")
    """``low``: low entropy is suspicious (the paper); ``both``: distance from the clean median entropy."""
    variant: str = "global"
    """``global``: mean entropy over the image; ``local``: its ``quantile`` over the pixels."""
    quantile: float = 0.1
    """Entropy quantile scored by the ``local`` variant."""
    chunk: int = 0
    """Most blended images per model forward; 0 = 32 on a CPU (larger batches fall out of
    cache and run slower per image, measured) and 512 on a GPU."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if not 0 <= self.quantile <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.blend not in BLENDS:
            raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0 = automatic), got {self.chunk}")

    def setup(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        """Keep the first half's images as overlays (cycled to ``n``); calibrate on the rest."""
        if len(budget) < 2:
            raise BenchmarkError(f"strip needs at least 2 budget images, got {len(budget)}")
        pool, calibration = budget.split(0.5)
        self._overlays = pool.float_images()[torch.arange(self.n) % len(pool)]
        log.info("strip: %d overlays from %d pool images, %d images calibrate the threshold",
                 self.n, len(pool), len(calibration))
        if self.direction == "both":
            self._clean_median = torch.cat([self.entropy_score(model, images) for images, _ in calibration.batches()]).median()
        return calibration

    def score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        low_entropy = self.entropy_score(model, images)
        if self.direction == "both":
            return (low_entropy - self._clean_median.to(low_entropy.device)).abs()
        return low_entropy

    def entropy_score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """The negated blend entropy of each image (the paper's score: higher = more suspicious)."""
        overlays = self._overlays.to(images.device)
        batch = images.shape[0]
        entropy = torch.zeros(batch, *images.shape[-2:], device=images.device)
        chunk = self.chunk or (512 if images.device.type == "cuda" else 32)
        for blend in torch.arange(batch * self.n, device=images.device).split(chunk):
            source, overlay = blend // self.n, blend % self.n
            if self.blend == "sum":
                mixed = (images[source] + overlays[overlay]).clamp(max=1)
            else:
                mixed = (1 - self.alpha) * images[source] + self.alpha * overlays[overlay]
            log_p = logits_of(model, mixed).log_softmax(dim=1)
            entropy.index_add_(0, source, -(log_p.exp() * log_p).sum(dim=1))
        entropy = (entropy / self.n).flatten(1)
        if self.variant == "global":
            return -entropy.mean(dim=1)
        rank = 1 + round(self.quantile * (entropy.shape[1] - 1))  # nearest rank, no size limit
        return -entropy.kthvalue(rank, dim=1).values
