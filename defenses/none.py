"""``none``: no defense; the trained model predicts as it is (the leaderboard's reference row)."""

from torch import nn

from defenses.base import CleanBudget, ModelRepairDefense


class NoDefense(ModelRepairDefense):
    """No defense: post-defense numbers equal the attacked model's."""

    name = "none"

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        return model
