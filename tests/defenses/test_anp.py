"""ANP: the masks fall on the channel that adversarial neuron noise exposes, and only that
channel is pruned; without noise nothing is exposed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import CleanBudget, registry
from defenses.anp import candidate_thresholds


class Planted(nn.Module):
    """Channels 0 and 1 carry x0 and x1 (class 1 iff x1 > x0). Channel 2 is a dormant backdoor
    neuron: BatchNorm gives it x2 - 0.5 - 0.5 <= 0, so its ReLU is silent on every input in
    [0, 1], but scaling its weight up or its bias down (ANP's noise) wakes it and it votes
    strongly for class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(1 - self.bn.eps)
            self.bn.bias.copy_(torch.tensor([0.0, 0.0, -0.5]))
            self.head.weight.copy_(torch.tensor([[10.0, -10, 0], [-10, 10, 50]]).view(2, 3, 1, 1) / 2)
            self.head.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.bn(self.conv(x))
        return self.head(torch.cat([features[:, :2], torch.relu(features[:, 2:])], dim=1))


def planted_budget() -> CleanBudget:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    masks = (images[:, 1] > images[:, 0]).long()
    return CleanBudget(images, masks, ("a", "b"), torch.device("cpu"), 4)


def test_noise_exposes_the_dormant_channel_and_only_it_is_pruned() -> None:
    defense = registry.get("anp").create({"iterations": 30})
    repaired = defense.fit(Planted(), planted_budget()).model
    assert repaired.bn.weight.tolist() == [1.0, 1.0, 0.0]
    assert defense.report["pruned_channels"] == 1
    assert defense.report["mask_below_0.2"] == 1  # the official fixed threshold would prune it too
    assert defense.report["holdout_miou_before"] == defense.report["holdout_miou_after"] > 0.99
    assert not any(hasattr(m, "_forward_hooks") and m._forward_hooks for m in repaired.modules())


def test_without_noise_nothing_is_exposed() -> None:
    defense = registry.get("anp").create({"iterations": 30, "eps": 0})
    repaired = defense.fit(Planted(), planted_budget()).model
    assert repaired.bn.weight.tolist() == [1.0, 1.0, 1.0]
    assert defense.report["mask_mean"] == 1.0


def test_candidate_thresholds() -> None:
    assert candidate_thresholds(0.25) == [0.25, 0.5, 0.75]
    assert candidate_thresholds(0.3) == [0.3, 0.6, 0.9]


@pytest.mark.parametrize("params", [{"eps": "-0.1"}, {"alpha": "1.5"}, {"iterations": "0"}, {"threshold_step": "1"},
                                    {"holdout": "0"}, {"max_drop": "2"}, {"mask_lr": "0"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("anp").create(params)
