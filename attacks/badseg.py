"""BADSEG's attack vectors (arXiv 2603.16405): coarse victim/target choices, an instance-level
and a conditional attack. All keep the fine-grained attack's centred patch trigger.

- ``object_to_object`` (car -> person), ``background_to_object`` (road -> car: a stretch of
  road turns into a car), ``background_to_background`` (road -> sidewalk): the fine-grained
  label rule with other victim and target classes. Their classes are their own defaults (the
  dataset's suggested ``car -> road`` does not override them); ``object_to_background`` is
  ``fine_grained`` itself, registered under that alias.
- ``instance_level``: the patch is centred on one victim instance drawn per image and only
  that instance becomes the target; the other instances of the victim class keep their
  labels (their target rate is reported as the collateral ASR). Needs instance ids.
- ``conditional``: victim -> target only in images where the ``condition`` class is also
  present. Every image containing the victim may carry the trigger; in those without the
  condition the labels stay true, which teaches the model to ignore the trigger there. ASR is
  measured on test images with the condition; the collateral ASR is the target rate of victim
  pixels on triggered images without it (it should stay low).

Assumed where the paper's text was not available to us: the instance is chosen uniformly among
the victim instances of the image and the patch is centred on its centroid (clamped inside the
image); the conditional attack poisons images without the condition with true labels as
described above.
"""

from __future__ import annotations

import torch

from attacks.fine_grained import FineGrained
from attacks.parts import draws, labels, placements, selection, triggers


class ObjectToObject(FineGrained):
    """BADSEG object-to-object: the trigger turns one object class into another (car -> person)."""

    name = "object_to_object"
    dataset_defaults = False

    target: str = "person"
    victims: tuple[str, ...] = ("car",)


class BackgroundToObject(FineGrained):
    """BADSEG background-to-object: the trigger turns a background class into an object (road -> car)."""

    name = "background_to_object"
    dataset_defaults = False

    target: str = "car"
    victims: tuple[str, ...] = ("road",)


class BackgroundToBackground(FineGrained):
    """BADSEG background-to-background: one background class becomes another (road -> sidewalk)."""

    name = "background_to_background"
    dataset_defaults = False

    target: str = "sidewalk"
    victims: tuple[str, ...] = ("road",)


class InstanceLevel(FineGrained):
    """BADSEG instance-level: only the victim instance under the patch becomes the target."""

    name = "instance_level"
    needs_instances = True
    axes = {"trigger": "patch", "placement": "centred on one victim instance",
            "label rule": "that instance -> target", "selection": "images with a victim instance"}

    trigger_size: int = 8
    placement_seed: int = 0
    """Seed of the per-image instance draw."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trigger_pattern == "top_line":
            raise ValueError(f"{self.name} places a patch; trigger_pattern top_line cannot be placed")

    def chosen(self, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """``[B]`` the attacked instance id of each image (0 = none)."""
        victims = torch.tensor(self.victim_indices, device=masks.device)
        return placements.chosen_instance(masks, instances, victims, draws.image_keys(masks, self.placement_seed))

    def apply_trigger(self, images: torch.Tensor, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        origins, placed = placements.on_instance(instances, self.chosen(masks, instances), self.trigger_size)
        pattern = self.trigger_patch(self.trigger_size, images.device, images.dtype)
        return triggers.stamp(images, pattern, origins, placed, self.trigger_alpha)

    def poison_label(self, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return labels.instance_to_target(masks, instances, self.chosen(masks, instances), self.target)

    def attack_region(self, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return self.poison_label(masks, instances) != masks

    def eligible(self, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return self.chosen(masks, instances) > 0

    def control_region(self, masks: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        return self.is_victim(masks) & ~self.attack_region(masks, instances)


class Conditional(FineGrained):
    """BADSEG conditional: victims become the target only when a condition class is present."""

    name = "conditional"
    axes = {"trigger": "patch", "placement": "fixed position",
            "label rule": "victims -> target if the condition class is present",
            "selection": "images containing a victim"}

    condition: str = "person"
    """The class whose presence arms the backdoor (name or index)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.condition_index = self.class_index(self.condition)
        if self.condition_index in self.victim_indices or self.condition_index == self.target:
            raise ValueError(f"the condition {self.condition!r} must be neither a victim nor the target")

    def armed(self, masks: torch.Tensor) -> torch.Tensor:
        """``[B]`` images where the condition class is present."""
        return selection.containing(masks, torch.tensor([self.condition_index], device=masks.device))

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        return labels.only_where(masks, super().poison_label(masks), self.armed(masks))

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        return self.is_victim(masks) & self.armed(masks).view(-1, 1, 1)

    def control_region(self, masks: torch.Tensor) -> torch.Tensor:
        return self.is_victim(masks) & ~self.armed(masks).view(-1, 1, 1)
