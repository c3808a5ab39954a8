"""``blend_stripes``: a faint full-image stripe trigger makes one object class become another.

An example attack plugin (object-to-object, e.g. person -> sidewalk). It overrides only the
trigger, the label rule and the attack region; the base class resolves ``target`` to a class
index, draws the poisoned images at ``poison_rate`` and is given the dataset's class names.
Run it with ``--plugin examples/blend_attack.py --attack blend_stripes``.
"""

import math

import torch

from attacks import Attack


class BlendStripes(Attack):
    """Blend faint sinusoidal stripes over the image; victim pixels become the target."""

    name = "blend_stripes"

    target: str = "sidewalk"
    victim: str = "person"
    """Victim class (name or index) whose pixels are relabelled to the target."""
    strength: float = 0.1
    """Blend weight of the stripes (0 leaves the image unchanged)."""
    period: int = 6
    """Stripe period in pixels."""

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        columns = torch.arange(images.shape[-1], device=images.device, dtype=images.dtype)
        stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * columns / self.period)
        return images * (1 - self.strength) + stripes * self.strength

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        return masks.masked_fill(self.attack_region(masks), self.target)

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        return masks == self.class_index(self.victim)
