"""The training-time defense kinds: given the poisoned training set instead of a clean budget.

Sources: poisoned-data detection as in spectral signatures (Tran et al., NeurIPS 2018) and
activation clustering (Chen et al., 2018, arXiv 1811.03728); secure training as in ABL (Li et
al., NeurIPS 2021). Departure shared by all three: classification flags whole samples, but a
segmentation attack may change only one class's pixels, so a sample here may also be a
*segment* (one class in one image), scored on the mean classifier-input feature of its pixels.

A training-time defense receives a :class:`PoisonedTrainingSet`: the training images and
labels exactly as the victim received them (triggered images and relabelled masks among
them), never which samples were poisoned, never the trigger, the target or test data.

- :class:`DataFilterDefense` (poisoned-data detection) - override
  ``flag(model, data) -> Flags``: it is also given the model trained on that set, and scores
  *samples*: whole images (``scores [N]``) or *segments* (``scores [N, K]``: the pixels labelled
  class ``k`` in image ``n``). The harness drops flagged images or sets flagged segments to
  ignore, retrains with the victim's recipe, evaluates, and scores the flags against the hidden
  poison indicator (``benchmark/retrain.py``).
- :class:`TrainingDefense` (secure training) - override ``train_model(data) -> (model, flags)``:
  it trains its own model from ``data.new_model()`` (flags: the samples it isolated, if any,
  scored by the harness like a filter's).

Helpers shared by the built-ins: :func:`segment_features` (mean classifier-input feature of
every segment) and :func:`segment_losses` (mean cross-entropy of every segment).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.plugin import IGNORE_INDEX
from benchmark.toolkit import TrainConfig, batch_indices, logits_of, to_input
from defenses.base import Defense
from defenses.pruning import find_classifier


@dataclass(frozen=True)
class PoisonedTrainingSet:
    """The victim's training set as received: uint8 images ``[N,3,H,W]``, int64 masks ``[N,H,W]``."""

    images: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]
    device: torch.device
    new_model: Callable[[], nn.Module]
    """A fresh, untrained model of the victim's architecture (for defenses that train)."""
    recipe: TrainConfig
    """The victim's training recipe (epochs, batch size, learning rate)."""
    seed: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(index, float images, masks)`` batches on the device, in order."""
        for index in batch_indices(torch.arange(len(self)), batch_size or self.recipe.batch_size):
            yield index, to_input(self.images[index].to(self.device)), self.masks[index].to(self.device)

    def present(self) -> torch.Tensor:
        """``bool [N, K]``: which segments exist (class ``k`` labelled somewhere in image ``n``)."""
        labels = self.masks.flatten(1).long()
        labels = labels.masked_fill(labels == IGNORE_INDEX, self.num_classes)
        present = torch.zeros(len(self), self.num_classes + 1, dtype=torch.bool)
        return present.scatter_(1, labels.cpu(), True)[:, :-1]


LEVELS = ("segment", "image")
"""What a segment-level data filter may hand the harness (its ``level`` parameter)."""


@dataclass(frozen=True)
class Flags:
    """What a data filter says: a continuous suspicion score (higher = more suspicious) and a
    decision per sample. Image samples: both ``[N]``; segment samples: both ``[N, K]`` (entries
    of segments that do not exist are ignored)."""

    scores: torch.Tensor
    flagged: torch.Tensor

    def __post_init__(self) -> None:
        if self.scores.shape != self.flagged.shape or self.scores.ndim not in (1, 2):
            raise ValueError(f"flags: scores {tuple(self.scores.shape)} and flagged "
                             f"{tuple(self.flagged.shape)} must both be [N] or [N, K]")

    @property
    def level(self) -> str:
        return "image" if self.scores.ndim == 1 else "segment"

    def at_level(self, level: str) -> "Flags":
        """Segment flags as they are (``segment``), or per image (``image``: an image's score is
        its most suspicious segment's, and it is flagged if any of its segments is)."""
        if level == "segment":
            return self
        return Flags(self.scores.nan_to_num(nan=-math.inf).max(dim=1).values, self.flagged.any(dim=1))


class DataFilterDefense(Defense):
    """Poisoned-data detection: flag training samples; the harness removes them and retrains."""

    def flag(self, model: nn.Module, data: PoisonedTrainingSet) -> Flags:
        raise NotImplementedError


class TrainingDefense(Defense):
    """Secure training: train a model of one's own on the poisoned training set."""

    def train_model(self, data: PoisonedTrainingSet) -> tuple[nn.Module, Flags | None]:
        raise NotImplementedError


def segment_sums(values: torch.Tensor, masks: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment sums of ``values [B,D,H,W]`` and pixel counts: ``[B,K,D]`` and ``[B,K]``."""
    one_hot = F.one_hot(masks.masked_fill(masks == IGNORE_INDEX, num_classes), num_classes + 1)[..., :-1]
    one_hot = one_hot.to(values.dtype)  # [B,H,W,K]
    return torch.einsum("bhwk,bdhw->bkd", one_hot, values), one_hot.sum(dim=(1, 2))


def classifier_input(model: nn.Module, num_classes: int, images: torch.Tensor,
                     what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The features the per-pixel classifier sees (``[B,D,H',W']``, from a forward hook) and
    the logits of the same forward; ``what`` names the defense in errors."""
    _, conv = find_classifier(model, num_classes, what=what, layer_param=False)
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].float()))
    try:
        logits = logits_of(model, images)
    finally:
        handle.remove()
    return seen[0], logits


def segment_features(model: nn.Module, data: PoisonedTrainingSet, what: str) -> torch.Tensor:
    """``[N, K, D]``: the mean classifier-input feature over each segment's pixels (features
    resized bilinearly to the mask size; zeros where the segment does not exist)."""
    out = []
    for _, images, masks in data.batches():
        features, _ = classifier_input(model, data.num_classes, images, what)
        features = F.interpolate(features, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        sums, counts = segment_sums(features, masks, data.num_classes)
        out.append((sums / counts.clamp(min=1).unsqueeze(-1)).cpu())
    return torch.cat(out)


def segment_losses(model: nn.Module, data: PoisonedTrainingSet) -> torch.Tensor:
    """``[N, K]``: the mean per-pixel cross-entropy of each segment (NaN where absent)."""
    out = []
    for _, images, masks in data.batches():
        loss = F.cross_entropy(logits_of(model, images), masks, ignore_index=IGNORE_INDEX, reduction="none")
        sums, counts = segment_sums(loss.unsqueeze(1), masks, data.num_classes)
        out.append(torch.where(counts > 0, sums[..., 0] / counts.clamp(min=1), torch.nan).cpu())
    return torch.cat(out)
