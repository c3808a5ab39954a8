"""``spectral``: spectral signatures (Tran, Li and Madry 2018, "Spectral Signatures in Backdoor
Attacks"), adapted to segmentation.

Poisoned samples of a class leave a trace in the learned representation that is strong along
the top singular direction of that class's centred representations. For each label class the
defense centres the representations of the class's samples, scores each by its squared
projection on the top right singular vector, and removes the ``removal_factor * poison_fraction``
highest-scoring fraction of the class (the paper removes 1.5 epsilon, epsilon an upper bound on
the poisoned fraction).

Segmentation specifics: a sample is a *segment* (the pixels labelled class ``k`` in one image,
as the victim received the labels), represented by the mean over its pixels of the features
the per-pixel classifier sees (the penultimate layer, as in the paper). A fine-grained attack
relabels only victim pixels, so a whole-image representation is dominated by clean pixels; the
segment that swallowed them (the target segment) is what differs. ``level=image`` drops every
image with a flagged segment instead (its score: the highest of its segments). Scores are
divided by their class's mean (the variance along the top direction), so scores of different
classes can be ranked together for the harness's AUROC. Classes with fewer than ``min_samples``
segments are left alone.

Official code read: MadryLab/backdoor_data_poisoning, ``compute_corr.py`` (representation of
``resnet.py``: a flattened activation of the last residual stage; SVD of the centred
representations of the target label's examples; removal of the scores above the 85th
percentile, i.e. 1.5 times the 10% poison fraction). Departures: the official script only
scores the (known) target label, since it measures detection; a defender does not know the
target, so, as the paper's Algorithm 1 does, every label class is filtered. The script projects
the *uncentred* representations on the top singular vector; this follows the paper's
algorithm and projects the centred ones (the ranking differs only by the offset of the mean).

Positive control: ``image_level`` (the BadNets analogue of the paper's pixel/pattern
attacks), ``tests/controls/test_training_time_controls.py``. Known failure: on seed 1 the
poisoned road segments lie along the *second* singular direction of the road class (singular
values 6.77 and 6.08; AUROC of the squared projection 0.55 on the first, 1.00 on the second;
distance to the class mean 0.98), so the paper's top-direction score finds 6% of them and the
backdoor survives retraining; on seed 0 the poison is the top direction (18.7 against 6.7).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from defenses.training import LEVELS, DataFilterDefense, Flags, PoisonedTrainingSet, segment_features

log = logging.getLogger(__name__)


class SpectralSignatures(DataFilterDefense):
    """Spectral signatures: remove the samples with the largest top-singular-direction scores."""

    name = "spectral"

    poison_fraction: float = 0.1
    """The defender's upper bound on the poisoned fraction of a class's samples (epsilon)."""
    removal_factor: float = 1.5
    """Remove ``removal_factor * poison_fraction`` of each class (1.5 in the paper)."""
    level: str = "segment"
    """``segment``: set flagged segments to ignore; ``image``: drop images with a flagged segment."""
    min_samples: int = 10
    """Classes with fewer segments than this are not filtered."""

    def __post_init__(self) -> None:
        if not 0 < self.poison_fraction < 1:
            raise ValueError(f"poison_fraction must be in (0, 1), got {self.poison_fraction}")
        if not 0 < self.removal_factor * self.poison_fraction <= 1:
            raise ValueError("removal_factor * poison_fraction must be in (0, 1], got "
                             f"{self.removal_factor * self.poison_fraction}")
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be >= 2, got {self.min_samples}")

    def flag(self, model: nn.Module, data: PoisonedTrainingSet) -> Flags:
        features, present = segment_features(model, data, self.name), data.present()
        scores = torch.full(present.shape, math.nan)
        flagged = torch.zeros(present.shape, dtype=torch.bool)
        removed = {}
        for k in range(data.num_classes):
            rows = present[:, k].nonzero().flatten()
            if len(rows) < self.min_samples:
                continue
            score = spectral_scores(features[rows, k])
            count = math.ceil(round(self.removal_factor * self.poison_fraction * len(rows), 6))  # 1.5 * 0.1 * 40 is 6.000000000000001
            scores[rows, k] = score
            flagged[rows[score.argsort(descending=True, stable=True)[:count]], k] = True
            removed[data.class_names[k]] = count
        self.report = {"removed_per_class": removed}
        log.info("spectral: removing %s segments per class", removed)
        return Flags(scores, flagged).at_level(self.level)


def spectral_scores(representations: torch.Tensor) -> torch.Tensor:
    """Squared projections of the centred rows on their top right singular vector, divided by
    their mean (so 1 is typical; outliers along that direction score high)."""
    centred = representations.double() - representations.double().mean(dim=0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    score = (centred @ vh[0]) ** 2
    return (score / score.mean().clamp(min=1e-12)).float()
