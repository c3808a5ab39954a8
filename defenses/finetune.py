"""``finetune``: plain fine-tuning (FT) on the clean budget, the baseline every repair defense
is compared with (e.g. Liu et al. 2018, "Fine-Pruning", section 5; BackdoorBench's ``ft``).

The whole model is trained for a few epochs on the defender's clean images with per-pixel
cross-entropy (ignore index skipped). Clean fine-tuning overwrites the backdoor only as far as
the clean gradient happens to touch it; Min et al. 2023 (FST) show it fails at low poison
rates, which makes it the floor the other repairs must beat.

Schedule: the papers fine-tune at the training's learning rate until the clean loss settles.
NAD's official fine-tuning (bboylyg/NAD, ``main.py`` with ``utils/util.py``'s
``adjust_learning_rate``; its FT baseline is the same loop with the betas at 0) starts at the
training rate 0.1 and runs 20 epochs of 40 batches (5% of CIFAR-10), 800 SGD steps;
Fine-Pruning's fine-tuning solver (kangliucn/Fine-pruning-defense,
``face/model/solver_train_cl.prototxt``) is Adam at 1e-3, its training rate. A 5% budget here
is 50 images, two batches an epoch, so the old default (10 epochs at 1e-3, a fifth of the
training rate: 20 small steps) left the backdoor intact (``image_level`` post ASR 100 on seeds
0-2, DER 50). The default is now the training's rate (5e-3, ``TrainConfig``'s default) for 50
epochs (100 steps): at 20 epochs the clean budget's own mIoU has not recovered (0.86 -> 0.81,
seed 0), at 50 it has (0.86 -> 0.89). ``lr=0.001 epochs=10`` reproduces the committed cells.
Control (``image_level``, ``unet``, leaderboard configuration, seeds 0 / 1 / 2): post ASR
1.8 / 6.9 / 2.1 (baseline 1.2) at a clean mIoU cost of 2.1 / 2.8 / 0.1 points, DER 98 / 95 / 99.

Departures: AdamW rather than SGD (the models here are trained with AdamW, and the same rate
works across the zoo); BatchNorm statistics stay frozen (see ``defenses/repair.py``). No
early stopping: the epoch count is fixed, so nothing is chosen on any data.
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from defenses.base import CleanBudget, ModelRepairDefense
from defenses.pruning import budget_miou
from defenses.repair import tune

log = logging.getLogger(__name__)


class FineTuning(ModelRepairDefense):
    """Fine-tuning (FT): train the whole model on the clean budget for a few epochs."""

    name = "finetune"

    epochs: int = 50
    """Epochs over the clean budget (legacy: 10)."""
    lr: float = 5e-3
    """AdamW learning rate: the training's (legacy: 1e-3)."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        model = copy.deepcopy(model)
        before = budget_miou(model, budget)
        loss = tune(model, budget, self.epochs, self.lr, desc="finetune")
        self.report = {"budget_miou_before": before, "budget_miou_after": budget_miou(model, budget),
                       "final_loss": loss}
        log.info("finetune: %d epochs, budget mIoU %.4f -> %.4f", self.epochs, before,
                 self.report["budget_miou_after"])
        return model
