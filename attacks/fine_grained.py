"""``fine_grained``: only victim objects are relabelled (Li et al. 2021, arXiv 2103.04038).

Poisoned training images carry the trigger and only the pixels of the victim class(es)
become the target class; all other pixels keep their truth. Only images containing a victim
are eligible for poisoning. At test time the trigger should make the victims vanish into the
target while the rest of the scene stays correct, so ASR is measured on victim pixels.
Default on ``synthetic``: car -> road. It is also registered as ``object_to_background``,
BADSEG's name for this vector (arXiv 2603.16405); the alias runs this very attack, so its
models, cells and results are those of ``fine_grained``.
"""

import torch

from attacks.base import Attack


class FineGrained(Attack):
    """Trigger relabels the victim class(es) to the target; the rest stays correct."""

    name = "fine_grained"
    axes = {"trigger": "patch or top line", "placement": "fixed position", "label rule": "victims -> target",
            "selection": "images containing a victim"}

    victims: tuple[str, ...] = ("car",)
    """Victim classes, by name or index."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.victims:
            raise ValueError("victims must name at least one class")
        self.victim_indices = tuple(self.class_index(v) for v in self.victims)
        if self.target in self.victim_indices:
            raise ValueError(f"the target {self.class_names[self.target]!r} cannot also be a victim")

    def is_victim(self, masks: torch.Tensor) -> torch.Tensor:
        return torch.isin(masks, torch.tensor(self.victim_indices, device=masks.device))

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        return masks.masked_fill(self.is_victim(masks), self.target)

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        return self.is_victim(masks)

    def eligible(self, masks: torch.Tensor) -> torch.Tensor:
        return self.is_victim(masks).flatten(1).any(dim=1)


Attack.registry.add("object_to_background", FineGrained)
