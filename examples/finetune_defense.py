"""``plain_finetune``: fine-tune the whole (possibly backdoored) model on clean data.

An example model-repair defense. ``repair`` receives the trained model and the defender's
clean budget (clean training images with their masks; never test data, the trigger or the
target) and returns a repaired model. Clean fine-tuning alone often weakens a backdoor.
"""

import copy

import torch
from torch import nn

from benchmark.toolkit import train_step
from defenses import CleanBudget, ModelRepairDefense


class PlainFineTune(ModelRepairDefense):
    """Fine-tune all weights on the clean budget with AdamW."""

    name = "plain_finetune"

    epochs: int = 5
    """Passes over the clean budget."""
    lr: float = 1e-3
    """AdamW learning rate."""

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        model = copy.deepcopy(model)  # the harness reuses the trained model for other defenses
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.lr)
        model.train()
        for _ in range(self.epochs):
            for images, masks in budget.batches():
                train_step(model, optimizer, images, masks, budget.device)
        return model
