"""``shrink_pad``: ShrinkPad (Li et al. 2021, "Rethinking the Trigger of Backdoor Attack").

Backdoors are sensitive to the trigger's exact location and appearance: shrinking the image
by a few pixels and zero-padding it back to full size at an offset moves and rescales the
trigger, which often breaks it while clean content is little changed.

Segmentation specifics: the transform is geometric, so the predicted map is in the filtered
image's frame. ``invert`` crops the logits at the same offset and resizes them back up, so
predictions line up with the original pixels (the padding's predictions are discarded). The
offset is drawn once per batch from a generator re-seeded by ``fit``, so runs repeat; ``invert``
uses the offset of the latest ``filter`` call, which is how the defended predictor pairs them.

Control: the paper's, a BadNets patch (``image_level``, ``unet``, leaderboard configuration):
post ASR falls from 100 to 3.0 / 2.7 / 1.8 on seeds 0 / 1 / 2 (baseline 1.2) at a clean mIoU
cost of 13.9 / 16.8 / 8.9 points with one-thread models; on the models two threads train (CI's)
seeds 1 and 2 keep 12.8 / 13.0 at a cost of 36.6 / 24.9 points, so the filter breaks the
trigger but how much of what remains is the degraded model's own road predictions was not
measured. The paper evaluates BadNets on CIFAR-10 (VGG-19, ResNet-34),
where shifting the trigger by 2-3 pixels already breaks it at a small accuracy cost; a
segmentation map also loses its boundaries' alignment to the resampling, which costs more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.plugin import BenchmarkError
from defenses.base import CleanBudget, InputFilterDefense, Predictor

OFFSETS = ("random", "center")


class ShrinkPad(InputFilterDefense):
    """Shrink the input by a few pixels, zero-pad it back at an offset; undo on the output."""

    name = "shrink_pad"

    shrink: int = 4
    """Pixels removed from each side length (0 leaves the image unchanged)."""
    offset: str = "random"
    """Where the shrunk image sits: ``random`` (per batch) or ``center``."""
    seed: int = 0
    """Seed of the random offsets."""

    def __post_init__(self) -> None:
        if self.shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink}")
        if self.offset not in OFFSETS:
            raise ValueError(f"offset must be one of {', '.join(OFFSETS)}, got {self.offset!r}")
        self._rng = torch.Generator().manual_seed(self.seed)
        self._top_left = (0, 0)

    def fit(self, model: nn.Module, budget: CleanBudget) -> Predictor:
        self._rng.manual_seed(self.seed)
        return super().fit(model, budget)

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if self.shrink >= min(height, width):
            raise BenchmarkError(f"shrink_pad: shrink {self.shrink} must be below the image side ({height}x{width})")
        if self.offset == "center":
            self._top_left = (self.shrink // 2, self.shrink // 2)
        else:
            top, left = torch.randint(0, self.shrink + 1, (2,), generator=self._rng).tolist()
            self._top_left = (top, left)
        top, left = self._top_left
        small = F.interpolate(images, size=(height - self.shrink, width - self.shrink),
                              mode="bilinear", align_corners=False, antialias=False)
        return F.pad(small, (left, self.shrink - left, top, self.shrink - top))

    def invert(self, logits: torch.Tensor) -> torch.Tensor:
        height, width = logits.shape[-2:]
        top, left = self._top_left
        crop = logits[..., top:top + height - self.shrink, left:left + width - self.shrink]
        return F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
