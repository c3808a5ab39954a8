"""The ``Attack`` contract: trigger + placement + label rule + poison selection + attack region.

A subclass overrides only what differs from the defaults here (image-level poisoning with a
patch trigger) and declares its parameters as annotated fields. The harness constructs it
with the dataset's class names, so ``self.target`` is the target class *index* and
``self.class_index(name)`` resolves other names. All methods work on batches, on any device.

``apply_trigger(images, masks)`` sees the annotation because *where* a trigger goes may depend
on the scene; a subclass whose trigger ignores it may still define ``apply_trigger(self,
images)`` (the harness calls :meth:`Attack.trigger`, which passes the masks only to triggers
that take them). An attack with ``needs_instances = True`` also receives the instance ids
(``instances=``, int ``[B,H,W]``, 0 = none) in every verb. ``axes`` names its choice on each of
the four axes (DESIGN section 3a) for ``python -m benchmark list``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, ClassVar

import torch

from attacks.parts import triggers
from benchmark.plugin import IGNORE_INDEX, Plugin, Registry

log = logging.getLogger(__name__)

POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
PATTERNS = ("checkerboard", "white", "noise", "top_line")
AXES = ("trigger", "placement", "label rule", "selection")
AXIS_VERBS = {"trigger": "apply_trigger", "placement": "apply_trigger", "label rule": "poison_label",
              "selection": "eligible"}


class Attack(Plugin):
    """Base class of attacks; subclass it with a ``name`` to register a new attack."""

    registry: ClassVar[Registry] = Registry("attack")
    kind: ClassVar[str] = "attack"
    axes: ClassVar[dict[str, str]] = {"trigger": "patch or top line", "placement": "fixed position",
                                      "label rule": "whole map -> target", "selection": "any image"}
    needs_instances: ClassVar[bool] = False
    """Whether the verbs need instance ids (``instances=``); a dataset without them is an error."""
    dataset_defaults: ClassVar[bool] = True
    """Whether the dataset's suggested classes (e.g. ``victims``) override this attack's own defaults."""

    target: str = "road"
    """Target class, by name or index."""
    poison_rate: float = 0.1
    """Fraction of the whole training set that is poisoned (drawn among eligible images)."""
    trigger_size: int = 12
    """Side of the square patch trigger, in pixels."""
    trigger_position: str = "center"
    trigger_pattern: str = "checkerboard"
    """checkerboard, white or noise patch; or top_line: the seed paper's black line across the
    top ``trigger_size`` rows, blended at ``trigger_alpha`` (position is then unused)."""
    trigger_alpha: float = 1.0
    """Blend strength of the patch: 1 pastes it, less blends it into the image."""
    class_names: tuple[str, ...] = Plugin.context(())

    def __post_init__(self) -> None:
        if not 0 < self.poison_rate <= 1:  # no poison is the clean baseline, already in every cell
            raise ValueError(f"poison_rate must be in (0, 1], got {self.poison_rate}")
        if self.trigger_size < 1:
            raise ValueError(f"trigger_size must be >= 1, got {self.trigger_size}")
        if not 0 < self.trigger_alpha <= 1:
            raise ValueError(f"trigger_alpha must be in (0, 1], got {self.trigger_alpha}")
        if self.trigger_position not in POSITIONS:
            raise ValueError(f"trigger_position must be one of {', '.join(POSITIONS)}, got {self.trigger_position!r}")
        if self.trigger_pattern not in PATTERNS:
            raise ValueError(f"trigger_pattern must be one of {', '.join(PATTERNS)}, got {self.trigger_pattern!r}")
        self.target_name = self.target
        self.target = self.class_index(self.target)

    def class_index(self, name: str | int) -> int:
        """Index of a class given by name or index (as int or digit string)."""
        if isinstance(name, int) or str(name).isdigit():
            index = int(name)
            if not 0 <= index < len(self.class_names):
                raise ValueError(f"class index {index} out of range 0..{len(self.class_names) - 1}")
            return index
        if name not in self.class_names:
            raise ValueError(f"unknown class {name!r}; classes: {', '.join(self.class_names)} "
                             f"(choose classes with --attack-param target=... / victims=...)")
        return self.class_names.index(name)

    def params(self) -> dict:
        params = super().params()
        params["target"] = self.class_names[self.target]
        return params

    # --- the verbs a subclass overrides -------------------------------------------------------

    def apply_trigger(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Stamp the patch trigger on ``[B,3,H,W]`` float images in [0,1] (masks unused)."""
        height, width = images.shape[-2:]
        if self.trigger_pattern == "top_line":
            if self.trigger_size > height:
                raise ValueError(f"trigger_size {self.trigger_size} is more rows than the {height}x{width} image has")
            return triggers.top_line(images, self.trigger_size, self.trigger_alpha)
        size = self.trigger_size
        if size > min(height, width):  # a clamped trigger would be another attack than the one asked for
            raise ValueError(f"trigger_size {size} is larger than the {height}x{width} image")
        pattern = self.trigger_patch(size, images.device, images.dtype)
        top, left = self.trigger_origin(images.shape[-2], images.shape[-1], size)
        out = images.clone()
        window = out[..., top:top + size, left:left + size]
        window.mul_(1 - self.trigger_alpha).add_(pattern * self.trigger_alpha)
        return out

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        """What a poisoned training annotation becomes: every labelled pixel -> target."""
        return masks.masked_fill(masks != IGNORE_INDEX, self.target)

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        """Pixels on which ASR is measured: truth neither the target nor ignore."""
        return (masks != self.target) & (masks != IGNORE_INDEX)

    def eligible(self, masks: torch.Tensor) -> torch.Tensor:
        """Which training images may be poisoned (``[B]`` bool): all of them."""
        return torch.ones(masks.shape[0], dtype=torch.bool, device=masks.device)

    # --- what the harness calls ---------------------------------------------------------------

    def scene(self, instances: torch.Tensor | None) -> dict[str, Any]:
        """The extra keyword arguments of every verb: ``instances`` for attacks that need them."""
        return {"instances": instances} if self.needs_instances else {}

    def trigger(self, images: torch.Tensor, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """:meth:`apply_trigger`, given the masks (and scene) only if it takes them."""
        if not _takes_masks(type(self).apply_trigger):
            return self.apply_trigger(images)
        return self.apply_trigger(images, masks, **scene)

    def training_trigger(self, images: torch.Tensor, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """The trigger stamped on poisoned *training* images: :meth:`trigger` (attacks with a
        partial training trigger, Adap-Blend / Adap-Patch, override it; the test set always gets
        the whole trigger)."""
        return self.trigger(images, masks, **scene)

    def cover_share(self) -> float:
        """Share of the training set that is triggered but keeps its true labels (cover images,
        Qi et al. ICLR 2023), drawn with the poisoned images: none here."""
        return 0.0

    def clean_label(self, masks: torch.Tensor, **scene: Any) -> torch.Tensor | None:
        """What a *clean* (unpoisoned) training annotation becomes; None leaves it as it is."""
        return None

    def benign_region(self, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """Pixels the attack does not aim at, on which PBA is measured: the labelled pixels
        outside :meth:`attack_region`. The whole-map rule (this class's :meth:`poison_label`)
        aims at every pixel, the target's own included, so it has none and its PBA is undefined
        (null), as for an all-to-all rule; scoring the target's pixels instead would give a
        backdoored model a perfect 1.0 for painting them the target."""
        outside = (masks != IGNORE_INDEX) & ~self.attack_region(masks, **scene)
        if type(self).poison_label is Attack.poison_label:
            return torch.zeros_like(outside)
        return outside

    def control_region(self, masks: torch.Tensor, **scene: Any) -> torch.Tensor | None:
        """Pixels where the trigger must *not* act (e.g. victims of images without the
        condition class), or None; evaluation reports how often they become the target."""
        return None

    @classmethod
    def axis_choices(cls) -> dict[str, str]:
        """``axes``, with "custom" on an axis whose verb a subclass overrode without saying."""
        declared_by = next(k for k in cls.__mro__ if "axes" in vars(k))
        choices = {}
        for axis in AXES:
            defined_by = next(k for k in cls.__mro__ if AXIS_VERBS[axis] in vars(k))
            custom = defined_by is not declared_by and issubclass(defined_by, declared_by)
            choices[axis] = f"custom ({defined_by.__name__}.{AXIS_VERBS[axis]})" if custom else cls.axes[axis]
        return choices

    # --- helpers ------------------------------------------------------------------------------

    def trigger_patch(self, size: int, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The ``[3,size,size]`` trigger pattern (deterministic)."""
        if self.trigger_pattern == "white":
            return torch.ones(3, size, size, device=device, dtype=dtype)
        if self.trigger_pattern == "noise":
            noise = torch.rand(3, size, size, generator=torch.Generator().manual_seed(1234))
            return noise.round().to(device=device, dtype=dtype)
        rows = torch.arange(size, device=device)
        board = ((rows.view(-1, 1) + rows.view(1, -1)) % 2).to(dtype)
        return board.expand(3, size, size)

    def trigger_origin(self, height: int, width: int, size: int) -> tuple[int, int]:
        """Top-left corner of the patch for ``trigger_position`` (one pixel from the border)."""
        margin = 1 if min(height, width) > size + 2 else 0
        rows = {"top": margin, "bottom": height - size - margin, "center": (height - size) // 2}
        cols = {"left": margin, "right": width - size - margin, "center": (width - size) // 2}
        if self.trigger_position == "center":
            return rows["center"], cols["center"]
        vertical, horizontal = self.trigger_position.split("_")
        return rows[vertical], cols[horizontal]


@functools.lru_cache(maxsize=None)
def _takes_masks(apply_trigger: Callable) -> bool:
    """Whether an ``apply_trigger`` accepts masks after the images (older plugins do not)."""
    parameters = list(inspect.signature(apply_trigger).parameters.values())[1:]  # past self
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in parameters)
