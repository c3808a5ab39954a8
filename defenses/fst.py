"""``fst``: Feature Shift Tuning (Min et al., NeurIPS 2023, "Towards Stable Backdoor Purification
through Feature Shift Tuning"; official code AISafety-HKUST/stable_backdoor_purification).

Plain fine-tuning fails at low poison rates because clean and backdoor features stay
entangled under the old classifier. FST re-initialises the classifier, then fine-tunes the
whole model on clean data while pushing the new classifier weights ``w`` away from the
compromised ones ``w0``::

    loss = CE + alpha * <w, w0>,   with ||w|| projected back to ||w0|| after every step

so the features have to shift for the new classifier to fit the clean data.

Segmentation specifics: the "linear head" is the per-pixel classifier conv (the first conv
of an smp ``segmentation_head``, as in ``pruning``; or the module named by ``layer``); its
whole kernel is ``w`` and the loss is per-pixel cross-entropy (ignore index skipped).

Departures: AdamW at 1e-3 instead of SGD at 0.01 (the models here are trained with AdamW);
BatchNorm statistics frozen (``defenses/repair.py``); the classifier bias is re-initialised
with the weight but not constrained (the paper constrains the weight only).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from defenses.base import CleanBudget, ModelRepairDefense
from defenses.pruning import budget_miou, find_classifier
from defenses.repair import pixel_ce, tune

log = logging.getLogger(__name__)


class FeatureShiftTuning(ModelRepairDefense):
    """FST: re-initialise the classifier and fine-tune while pushing it away from the compromised one."""

    name = "fst"

    epochs: int = 10
    """Epochs over the clean budget."""
    lr: float = 1e-3
    """AdamW learning rate."""
    alpha: float = 0.2
    """Weight of the inner product <w, w0> between the new and the original classifier weights."""
    layer: str = ""
    """Module name of the per-pixel classifier conv; empty = find it (as ``pruning`` does)."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        model = copy.deepcopy(model)
        layer, head = find_classifier(model, budget.num_classes, self.layer, what="fst")
        original = head.weight.detach().clone()
        norm = original.norm()
        with torch.random.fork_rng(devices=[]):  # a seeded re-initialisation: same budget, same model
            torch.manual_seed(0)
            head.reset_parameters()
        project_norm(head, norm)

        def loss(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            return pixel_ce(model, images, masks) + self.alpha * (head.weight * original).sum()

        final = tune(model, budget, self.epochs, self.lr, loss=loss, after_step=lambda: project_norm(head, norm),
                     desc="fst")
        similarity = float(torch.nn.functional.cosine_similarity(head.weight.detach().flatten(),
                                                                 original.flatten(), dim=0))
        self.report = {"layer": layer, "budget_miou_after": budget_miou(model, budget),
                       "classifier_cosine_to_original": similarity, "final_loss": final}
        log.info("fst: classifier %s re-initialised and tuned; cosine to the original %.3f", layer, similarity)
        return model


@torch.no_grad()
def project_norm(head: nn.Module, norm: torch.Tensor) -> None:
    """Scale the classifier weight back to the original norm."""
    head.weight.mul_(norm / head.weight.norm().clamp_min(1e-12))
