"""The attack's side of a cell: building the attack, the poisoned training set and the
defender's clean budget, batched on the device.

The poisoned set is never a full copy of the training split: the poisoned rows (triggered
images and relabelled masks, computed once) are swapped into each training batch on the
device, so a memory-mapped split too large for memory is poisoned as cheaply as a small one.
Attacks see the masks (and, if they need them, the instance ids) of the rows they poison.

Two attack verbs serve attacks with cover samples (Adap-Blend / Adap-Patch,
:mod:`attacks.adaptive`): ``cover_share()`` (0 by default), a share of the training set that
is triggered but keeps its true labels, drawn with the poisoned images; and
``training_trigger`` (default: the test trigger), the trigger stamped on training rows, e.g.
a partial one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from attacks import Attack
from attacks.parts import cover
from benchmark.datasets import SegmentationDataset, Split
from benchmark.engine import to_input
from benchmark.errors import BenchmarkError
from benchmark.spec import RunSpec
from defenses import CleanBudget

log = logging.getLogger(__name__)

CHUNK = 256
POISON_STREAM, BUDGET_STREAM = 1, 2
"""Offsets of the random streams that choose the poisoned images and the clean budget. With the
bare seed, both drew the same permutation as the first epoch's shuffle, so an attack that can
poison any image poisoned exactly the first batches of epoch one."""
WARN_ONLY_WHEN_NONE_ELIGIBLE = {"fine_grained", "image_level"}
"""The seed attacks keep their first behaviour when no image is eligible (a warning, and a model
trained on clean data): stored results and tests rely on it. Every other attack stops with one line."""


def make_attack(spec: RunSpec, data: SegmentationDataset) -> Attack:
    """The attack of ``spec`` (the dataset's suggested parameters, overridden by the user's),
    checked on a few training images so that a bad parameter fails now with one line, not
    after the clean model has trained."""
    attack_class = Attack.registry.get(spec.attack)
    fields = {f.name for f in attack_class.parameters()}
    suggested = data.attack_defaults if attack_class.dataset_defaults else {}
    params = {k: v for k, v in suggested.items() if k in fields} | spec.attack_params
    if spec.poison_rate is not None:
        if "poison_rate" in params and float(params["poison_rate"]) != spec.poison_rate:
            raise BenchmarkError("poison rate given twice (--poison-rate and --attack-param poison_rate)")
        params["poison_rate"] = spec.poison_rate
    attack = attack_class.create(params, class_names=data.class_names)
    check_instances(attack, data)
    images, masks = data.train.images[:2].float() / 255, data.train.masks[:2].long()
    scene = scene_of(attack, data.train.instances, slice(0, 2))
    try:
        attack.trigger(images, masks, **scene), attack.poison_label(masks, **scene)
        attack.attack_region(masks, **scene), attack.benign_region(masks, **scene), attack.eligible(masks, **scene)
    except (ValueError, KeyError, IndexError) as error:
        raise BenchmarkError(f"attack {spec.attack}: {error}") from error
    return attack


def check_instances(attack: Attack, data: SegmentationDataset) -> None:
    """An attack that needs instance ids fails at once, in one line, on a dataset without them
    (in either split)."""
    if attack.needs_instances and (data.train.instances is None or data.test.instances is None):
        raise BenchmarkError(f"attack {attack.name} needs instance ids, but dataset {data.name} has none "
                             f"(synthetic has them; cityscapes reads *_gtFine_instanceIds.png)")


def scene_of(attack: Attack, instances: torch.Tensor | None, index: slice | torch.Tensor,
             device: torch.device | str = "cpu") -> dict:
    """The verbs' extra keyword arguments for rows ``index`` (instance ids, for attacks that need them)."""
    return attack.scene(None if instances is None else instances[index].to(device))


def select_poison(attack: Attack, masks: torch.Tensor, seed: int, instances: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the training images to poison: ``poison_rate`` of the whole set, drawn
    among the images ``attack.eligible`` allows (capped, with a warning, if too few are; an
    error if none is, except for the seed attacks). With a ``cover_rate``, the cover images
    are drawn with them and included (:func:`poison_rows` tells them apart)."""
    eligible = torch.cat([attack.eligible(masks[i:i + CHUNK].long(), **scene_of(attack, instances, slice(i, i + CHUNK)))
                          .cpu() for i in range(0, len(masks), CHUNK)])
    candidates = eligible.nonzero().flatten()
    if len(candidates) == 0 and attack.name not in WARN_ONLY_WHEN_NONE_ELIGIBLE:
        classes = ", ".join(f"{k}={v}" for k, v in attack.params().items() if k in ("target", "victims", "condition"))
        raise BenchmarkError(f"attack {attack.name}: no training image is eligible for poisoning "
                             f"(check its classes, {classes}, and its trigger size)")
    wanted = round(attack.poison_rate * len(masks)) + round(attack.cover_share() * len(masks))
    if wanted > len(candidates):
        log.warning("%s: poison rate %.3f (+ cover rate %.3f) asks for %d images but only %d are eligible; "
                    "poisoning those", attack.name, attack.poison_rate, attack.cover_share(), wanted, len(candidates))
        wanted = len(candidates)
    return candidates[draw_order(len(candidates), seed, POISON_STREAM)[:wanted]].sort().values


def covers_among(attack: Attack, train: Split, indices: torch.Tensor) -> torch.Tensor:
    """``[P]`` bool: which selected rows ``indices`` are cover images (all False without a cover rate)."""
    if attack.cover_share() == 0:
        return torch.zeros(len(indices), dtype=torch.bool)
    draws = torch.cat([cover.draw(train.masks[indices[i:i + CHUNK]].long(), 0) for i in range(0, len(indices), CHUNK)]
                      or [torch.empty(0)])
    return cover.split(draws, cover.count(len(indices), attack.poison_rate, attack.cover_share()))


def draw_order(n: int, seed: int, stream: int) -> torch.Tensor:
    """A permutation of ``n`` from the seed's own stream, independent of the training shuffle's."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + stream))


@dataclass
class PoisonedRows:
    """The poisoned rows of a training split; calling it swaps them into a batch (the engine's
    batch transform), with no host sync: every row is gathered, then kept or not. Attacks that
    also change clean annotations (IBA PRL's ``relabel_clean``) give ``clean_label``."""

    images: torch.Tensor
    """``uint8 [P,3,H,W]``: the triggered images, quantised as stored images are."""
    masks: torch.Tensor
    """``int64 [P,H,W]``: their poisoned labels."""
    slot: torch.Tensor
    """``[N]``: row ``i`` of the split is poisoned row ``slot[i]``, or -1 if clean."""
    clean_label: Callable[[torch.Tensor], torch.Tensor | None] | None = None
    """What a clean batch's masks become (None, or returning None: unchanged)."""

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slot = self.slot[index]
        poisoned, take = slot >= 0, slot.clamp(min=0)
        images = torch.where(poisoned.view(-1, 1, 1, 1), self.images[take], images)
        relabelled = self.clean_label(masks) if self.clean_label is not None else None
        clean = masks if relabelled is None else relabelled
        masks = torch.where(poisoned.view(-1, 1, 1), self.masks[take], clean)
        return images, masks


def poison_rows(attack: Attack, train: Split, indices: torch.Tensor, device: torch.device) -> PoisonedRows:
    """Apply ``attack``'s (training) trigger and label rule to rows ``indices`` of ``train``, on
    ``device``; cover rows keep their true labels."""
    images, masks = [], []
    covers = covers_among(attack, train, indices).to(device)
    for start in range(0, len(indices), CHUNK):
        index = indices[start:start + CHUNK]
        truth = train.masks[index].to(device).long()
        scene = scene_of(attack, train.instances, index, device)
        triggered = attack.training_trigger(to_input(train.images[index].to(device)), truth, **scene).contiguous()
        images.append((triggered.clamp(0, 1) * 255).round().to(torch.uint8))
        masks.append(cover.keep_true(truth, attack.poison_label(truth, **scene), covers[start:start + CHUNK]))
    slot = torch.full((len(train),), -1, dtype=torch.long)
    slot[indices] = torch.arange(len(indices))
    height, width = train.images.shape[2:]
    return PoisonedRows(
        images=torch.cat(images) if images else torch.empty(0, 3, height, width, dtype=torch.uint8, device=device),
        masks=torch.cat(masks) if masks else torch.empty(0, height, width, dtype=torch.long, device=device),
        slot=slot.to(device), clean_label=attack.clean_label)


def select_budget(num_train: int, poisoned: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of the defender's clean budget: ``fraction`` of the training split, drawn
    among images that were not poisoned (the defender's data is clean by assumption)."""
    clean = torch.ones(num_train, dtype=torch.bool)
    clean[poisoned] = False
    candidates = clean.nonzero().flatten()
    wanted = max(2, round(fraction * num_train))
    return candidates[draw_order(len(candidates), seed, BUDGET_STREAM)[:wanted]].sort().values


def clean_budget(spec: RunSpec, data: SegmentationDataset, attack: Attack, device: torch.device) -> CleanBudget:
    """The defender's budget: copies of clean training images that were not poisoned."""
    poisoned = select_poison(attack, data.train.masks, spec.seed, data.train.instances)
    index = select_budget(len(data.train), poisoned, spec.clean_fraction, spec.seed + 1)
    return CleanBudget(data.train.images[index].clone(), data.train.masks[index].long(),
                       data.class_names, device, spec.train.batch_size)
