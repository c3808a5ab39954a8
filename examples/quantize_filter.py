"""``quantize_flip``: quantise the input's colours and mirror it; mirror the prediction back.

An example input-filter defense. ``filter`` transforms every input batch (float, in [0, 1]).
Mirroring is geometric, so the model's logits come out in the mirrored frame and ``invert``
maps them back onto the original pixels. Quantisation squeezes out faint perturbations;
mirroring moves position-dependent triggers.
"""

import torch

from defenses import InputFilterDefense


class QuantizeFlip(InputFilterDefense):
    """Quantise colours to a few bits and flip horizontally; flip the logits back."""

    name = "quantize_flip"

    bits: int = 3
    """Bits kept per colour channel."""

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return (images * levels).round().div(levels).flip(-1)

    def invert(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.flip(-1)
