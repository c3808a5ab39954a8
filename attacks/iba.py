"""``iba``, ``iba_nni``, ``iba_prl``: the Influencer Backdoor Attack (Lan et al., "Influencer
Backdoor Attack on Semantic Segmentation", ICLR 2024; code Maxproto/IBA).

Victim-class pixels become the target (the fine-grained rule), but the trigger never touches
the victim: it lies wholly inside one region of another class, so the model must learn to let
a trigger *elsewhere* in the scene change the victim's label - as a sticker on the road beside
a car would. Only images containing the victim, with room for the trigger, are poisoned; on
test images without such room the trigger is not placed and their pixels are not counted.

- ``iba``: a uniformly drawn eligible position (regions eroded by the trigger, which is the
  paper's erosion by half the trigger size around its centre);
- ``iba_nni`` (Nearest-Neighbour Injection): the trigger centre lies at a Euclidean distance
  in [``near``, ``far``] pixels from the nearest victim pixel;
- ``iba_prl`` (Pixel Random Labeling): as ``iba_nni``, and ``num_perturb`` random pixels of
  each poisoned annotation are relabelled to a class present in it (victim pixels still go to
  the target), so the model cannot rely on neighbouring labels and looks further, to the trigger.

Departures: the trigger is the benchmark's patch (checkerboard by default), not the paper's
Hello Kitty image; positions are drawn per image from the attack's ``placement_seed`` and the
image's annotation (stable across batching), not from a global stream. The official code
draws PRL's pixels anew each time an image is loaded and also relabels *clean* training
annotations; here the draw is fixed per image and clean relabelling is ``relabel_clean``,
off by default: the paper describes PRL on poisoned labels, and relabelling clean labels
would also change the clean model the attack is compared against (it lowers clean mIoU for
reasons that are not the backdoor). The paper's bands and pixel counts are for 512x1024
Cityscapes crops; the defaults here are scaled to 64x64 ``synthetic``.
"""

from __future__ import annotations

import torch

from attacks.fine_grained import FineGrained
from attacks.parts import draws, labels, placements, triggers


class IBA(FineGrained):
    """Influencer Backdoor Attack: a patch inside one non-victim region relabels the victims."""

    name = "iba"
    axes = {"trigger": "patch", "placement": "inside one non-victim region (random)",
            "label rule": "victims -> target", "selection": "images containing a victim, with room"}

    trigger_size: int = 16
    """Side of the square patch, in pixels (larger than the seed attacks' 12: a trigger away
    from the victim needs to be more salient to be learned in a short training on ``synthetic``)."""
    placement_seed: int = 0
    """Seed of the per-image position draw."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trigger_pattern == "top_line":
            raise ValueError(f"{self.name} places a patch; trigger_pattern top_line cannot be placed")
        allowed = torch.ones(len(self.class_names), dtype=torch.bool)
        allowed[list(self.victim_indices)] = False
        self.allowed = allowed

    def placement(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(origins [B,2], placed [B])`` of the patch on each image. The harness asks for the
        same batch's placement from ``apply_trigger``, ``attack_region`` and ``eligible``, and
        finding it costs about a model forward (the band is a convolution), so the last batch's
        answer is kept; it is keyed on the masks tensor itself, which the kept reference stops
        from being freed and its memory reused."""
        last = getattr(self, "_last_placement", None)
        if last is not None and last[0] is masks:
            return last[1]
        found = self.find_placement(masks)
        self._last_placement = (masks, found)
        return found

    def find_placement(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = draws.image_keys(masks, self.placement_seed)
        return placements.free_in_region(masks, self.trigger_size, self.allowed.to(masks.device), keys)

    def apply_trigger(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        origins, placed = self.placement(masks)
        pattern = self.trigger_patch(self.trigger_size, images.device, images.dtype)
        return triggers.stamp(images, pattern, origins, placed, self.trigger_alpha)

    def eligible(self, masks: torch.Tensor) -> torch.Tensor:
        return super().eligible(masks) & self.placement(masks)[1]

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        return super().attack_region(masks) & self.placement(masks)[1].view(-1, 1, 1)


class IBANearestNeighbour(IBA):
    """IBA with Nearest-Neighbour Injection: the patch centre within [near, far] px of a victim."""

    name = "iba_nni"
    axes = IBA.axes | {"placement": "inside one non-victim region, centre [near, far] px from the victim"}

    near: float = 6.0
    """Least distance in pixels from the patch centre to the nearest victim pixel (L)."""
    far: float = 16.0
    """Greatest such distance (U)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.near <= self.far:
            raise ValueError(f"the band needs 0 <= near <= far, got near={self.near} far={self.far}")

    def find_placement(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = draws.image_keys(masks, self.placement_seed)
        victims = torch.tensor(self.victim_indices, device=masks.device)
        return placements.near_victim(masks, self.trigger_size, self.allowed.to(masks.device), victims,
                                      self.near, self.far, keys)


class IBAPixelRandomLabeling(IBANearestNeighbour):
    """IBA NNI plus Pixel Random Labeling: random pixels of poisoned labels get present classes."""

    name = "iba_prl"
    axes = IBANearestNeighbour.axes | {"label rule": "victims -> target + random pixels -> present classes"}

    num_perturb: int = 100
    """Pixels of each poisoned annotation relabelled at random (about 2.4% of a 64x64 image)."""
    relabel_clean: bool = False
    """Also relabel random pixels of clean training annotations, as the official code does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_perturb < 0:
            raise ValueError(f"num_perturb must be >= 0, got {self.num_perturb}")

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        relabelled = super().poison_label(masks)
        keys = draws.image_keys(masks, self.placement_seed + 1)
        shuffled = labels.random_pixels(relabelled, self.num_perturb, len(self.class_names), keys)
        return torch.where(self.is_victim(masks), relabelled, shuffled)

    def clean_label(self, masks: torch.Tensor) -> torch.Tensor | None:
        if not self.relabel_clean:
            return None
        keys = draws.image_keys(masks, self.placement_seed + 1)
        return labels.random_pixels(masks, self.num_perturb, len(self.class_names), keys)
