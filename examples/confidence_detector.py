"""``max_confidence``: reject inputs on which the model is unusually sure of itself.

An example detection defense. ``score`` gives one number per image, higher = more suspicious;
the base class sets the rejection threshold on the clean budget so that about ``fpr`` of clean
inputs are rejected. A trigger tends to make over-confident maps, so the score is the mean
over pixels of the max softmax probability.
"""

import torch
from torch import nn

from benchmark.toolkit import logits_of
from defenses import DetectionDefense


class MaxConfidence(DetectionDefense):
    """Score an input by its mean max-softmax probability; reject very confident maps."""

    name = "max_confidence"

    temperature: float = 1.0
    """Softmax temperature applied to the logits."""

    def score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        probabilities = (logits_of(model, images) / self.temperature).softmax(dim=1)
        return probabilities.amax(dim=1).mean(dim=(1, 2))
