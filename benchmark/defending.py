"""Fitting a cell's defense, of any kind, into the defended predictor that is evaluated.

Post-training defenses are handed the attacked model and the clean budget; training-time
defenses the poisoned training set, through :mod:`benchmark.retrain`. A defense that cannot
act on the model (``NotApplicable``: ANP without BatchNorm, say) is reported, not raised, so a
grid crosses every defense with every model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from attacks import Attack
from benchmark import retrain
from benchmark.datasets import SegmentationDataset
from benchmark.errors import NotApplicable
from benchmark.spec import RunSpec
from defenses import CleanBudget, Defense, Predictor
from defenses.base import ModelPredictor

log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """A fitted defense: its predictor (None when it does not apply), the fit's wall seconds,
    and the numbers a training-time defense adds to the record (flag metrics, retraining time)."""

    predictor: Predictor | None
    seconds: float
    record: dict = field(default_factory=dict)
    not_applicable: str | None = None

    def leaves(self, model: nn.Module) -> bool:
        """Whether the defended predictor is ``model`` itself (then its evaluation is the undefended one)."""
        return isinstance(self.predictor, ModelPredictor) and self.predictor.model is model


def fit(spec: RunSpec, data: SegmentationDataset, attack: Attack, defense: Defense, attacked_model: nn.Module,
        budget: CleanBudget, device: torch.device) -> Fitted:
    start = time.perf_counter()
    try:
        if retrain.is_training_time(defense):  # given the poisoned training set, not the budget
            model, record = retrain.defend(spec, data, attack, defense, attacked_model, device)
            return Fitted(ModelPredictor(model), time.perf_counter() - start, record)
        return Fitted(defense.fit(attacked_model, budget), time.perf_counter() - start)
    except NotApplicable as reason:
        log.warning("%s does not apply to %s: %s", defense.name, spec.model, reason)
        return Fitted(None, time.perf_counter() - start, not_applicable=str(reason))
