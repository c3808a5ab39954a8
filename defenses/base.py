"""The ``Defense`` contract: a trained model + the defender's clean budget -> a defended predictor.

A defense only ever receives two things: the trained (possibly backdoored) model and a
:class:`CleanBudget` - clean images and labels from the training split, never poisoned,
disjoint from the test set. It is never told the trigger, the target or the poisoned labels,
and the test set reaches it only as unlabelled images through ``predict``. Three kinds share
the one :class:`Predictor` interface ``predict(images) -> (labels [B,H,W], rejected [B])``:

- :class:`ModelRepairDefense` - override ``repair(model, budget) -> nn.Module``;
- :class:`InputFilterDefense` - override ``filter(images)`` (and ``invert(logits)`` for
  geometric filters);
- :class:`DetectionDefense` - override ``score(model, images) -> [B]`` (higher = more
  suspicious); the base rejects inputs scoring above a threshold set on clean budget images.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from benchmark.toolkit import batch_indices, logits_of, threshold_at_fpr, to_input
from benchmark.plugin import Plugin, Registry

CALIBRATIONS = ("rank", "quantile")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanBudget:
    """The defender's data: clean training images (uint8 ``[N,3,H,W]``) and their masks."""

    images: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]
    device: torch.device
    batch_size: int = 32

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(float images, masks)`` batches on the device, in order. A trailing single image
        joins the batch before it: BatchNorm after global pooling (PSPNet, DeepLab) cannot train
        on one image, so fine-tuning defenses may loop over these batches in train mode."""
        for index in batch_indices(torch.arange(len(self)), batch_size or self.batch_size):
            yield to_input(self.images[index].to(self.device)), self.masks[index].to(self.device)

    def float_images(self) -> torch.Tensor:
        return to_input(self.images.to(self.device))

    def split(self, fraction: float) -> tuple["CleanBudget", "CleanBudget"]:
        """Two disjoint parts: the first ``1 - fraction`` and the last ``fraction`` (held out)."""
        cut = max(1, min(len(self) - 1, round(len(self) * (1 - fraction))))
        first = CleanBudget(self.images[:cut], self.masks[:cut], self.class_names, self.device, self.batch_size)
        rest = CleanBudget(self.images[cut:], self.masks[cut:], self.class_names, self.device, self.batch_size)
        return first, rest


class Predictor:
    """A defended predictor. ``predict_scored`` also returns a detection score (or None)."""

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels, rejected, _ = self.predict_scored(images)
        return labels, rejected

    def predict_scored(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class ModelPredictor(Predictor):
    """Argmax of a model; rejects nothing."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def predict_scored(self, images):
        labels = logits_of(self.model, images).argmax(dim=1)
        return labels, torch.zeros(images.shape[0], dtype=torch.bool, device=images.device), None


class Defense(Plugin):
    """Base class of defenses; subclass one of the three kinds below with a ``name``."""

    registry: ClassVar[Registry] = Registry("defense")
    kind: ClassVar[str] = "defense"

    report: dict = Plugin.context(default_factory=dict)
    """Extra numbers a defense wants in the result (e.g. the pruned fraction), set during fit."""

    def fit(self, model: nn.Module, budget: CleanBudget) -> Predictor:
        """Turn the trained model into a defended predictor using only the clean budget."""
        raise NotImplementedError


class ModelRepairDefense(Defense):
    """A defense that returns a changed model (fine-pruning, fine-tuning, ...)."""

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        raise NotImplementedError

    def fit(self, model: nn.Module, budget: CleanBudget) -> Predictor:
        return ModelPredictor(self.repair(model, budget))


class InputFilterDefense(Defense):
    """A defense that transforms every input; geometric filters also invert the output."""

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def invert(self, logits: torch.Tensor) -> torch.Tensor:
        """Map logits of the filtered image back onto the original pixels (default: identity)."""
        return logits

    def fit(self, model: nn.Module, budget: CleanBudget) -> Predictor:
        return FilteredPredictor(model, self)


class FilteredPredictor(Predictor):
    def __init__(self, model: nn.Module, defense: InputFilterDefense) -> None:
        self.model, self.defense = model, defense

    def predict_scored(self, images):
        filtered = self.defense.filter(images).clamp(0, 1)
        labels = self.defense.invert(logits_of(self.model, filtered)).argmax(dim=1)
        return labels, torch.zeros(images.shape[0], dtype=torch.bool, device=images.device), None


class DetectionDefense(Defense):
    """A defense that flags suspicious inputs; flagged inputs are rejected.

    The threshold comes from the scores of clean budget images (``calibration``), so about a
    fraction ``fpr`` of clean inputs is rejected. Override ``setup`` to keep part of the budget
    for the detector itself (the rest calibrates the threshold), and ``calibration_scores`` to
    score the calibration images out of sample where the detector also fits on them.
    """

    fpr: float = 0.05
    """Target false-positive rate on clean inputs, which sets the rejection threshold."""
    calibration: str = Plugin.added("rank", legacy="quantile")
    """``rank``: the split-conformal threshold, the calibration score of rank
    ``ceil((n + 1)(1 - fpr))``, which a new clean score exchangeable with the ``n`` calibration
    scores exceeds with probability at most ``fpr`` (at least ``fpr - 1 / (n + 1)``: 3.9% at
    fpr 0.05 with 50 images); ``quantile``: the ``1 - fpr`` quantile with linear interpolation,
    the former rule, which rejects more than ``fpr`` (8.5% with 25 images, 6.8% with 50)."""

    def __post_init__(self) -> None:
        if not 0 < self.fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {self.fpr}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {self.calibration!r}")

    def setup(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        """Prepare the detector; return the part of the budget used to calibrate it."""
        return budget

    def score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def calibration_scores(self, model: nn.Module, calibration: CleanBudget) -> torch.Tensor:
        """Scores of the calibration images, as a new clean input would score."""
        return torch.cat([self.score(model, images) for images, _ in calibration.batches()])

    def fit(self, model: nn.Module, budget: CleanBudget) -> Predictor:
        calibration = self.setup(model, budget)
        if len(calibration) < 1 / self.fpr:
            log.warning("%s: only %d clean images calibrate a threshold at fpr=%.3f; the false-positive "
                        "rate will be noisy (raise --clean-fraction)", self.name, len(calibration), self.fpr)
        clean_scores = self.calibration_scores(model, calibration)
        if self.calibration == "rank":
            threshold = rank_threshold(clean_scores, self.fpr)
        else:
            threshold = threshold_at_fpr(clean_scores, self.fpr)
        predictor = DetectingPredictor(model, self, threshold)
        predictor.calibration_scores = clean_scores.cpu()
        return predictor


def rank_threshold(clean_scores: torch.Tensor, fpr: float) -> float:
    """The clean score of rank ``ceil((n + 1)(1 - fpr))`` among ``n`` (the largest if that rank
    exceeds ``n``, which then rejects ``1 / (n + 1)``). A new score exchangeable with them
    exceeds the ``k``-th smallest with probability ``(n + 1 - k) / (n + 1)`` (split conformal
    prediction; Angelopoulos and Bates 2021, "A Gentle Introduction to Conformal Prediction",
    section 1)."""
    ordered = clean_scores.double().flatten().cpu().sort().values
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * (1 - fpr) - 1e-9))
    return float(ordered[max(rank, 1) - 1])


class DetectingPredictor(Predictor):
    def __init__(self, model: nn.Module, defense: DetectionDefense, threshold: float) -> None:
        self.model, self.defense, self.threshold = model, defense, threshold
        self.calibration_scores: torch.Tensor | None = None

    def predict_scored(self, images):
        labels = logits_of(self.model, images).argmax(dim=1)
        scores = self.defense.score(self.model, images)
        return labels, scores > self.threshold, scores
