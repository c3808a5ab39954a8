"""ANP: the masks fall on the channel that adversarial neuron noise exposes, and only that
channel is pruned (by number and by the legacy threshold search); without noise nothing is
exposed; on timm's BatchNormAct2d the mask acts before the activation, as pruning does."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import CleanBudget, registry
from defenses.anp import NeuronNoise, candidate_thresholds


class Planted(nn.Module):
    """Channels 0 and 1 carry x0 and x1 (class 1 iff x1 > x0). Channel 2 is a dormant backdoor
    neuron: BatchNorm (running statistics those of uniform inputs, so that batch statistics
    agree, and gamma undoing the scaling) gives it x2 - 0.5 - 0.5 <= 0, so its ReLU is silent on
    every input in [0, 1], but scaling its weight up or its bias down (ANP's noise) wakes it
    and it votes strongly for class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(1 / 12 - self.bn.eps)
            self.bn.weight.fill_(GAMMA)
            self.bn.bias.copy_(torch.tensor([0.0, 0.0, -0.5]))
            self.head.weight.copy_(torch.tensor([[10.0, -10, 0], [-10, 10, 50]]).view(2, 3, 1, 1) / 2)
            self.head.bias.zero_()
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.bn(self.conv(x))
        return self.head(torch.cat([features[:, :2], torch.relu(features[:, 2:])], dim=1))


GAMMA = 12 ** -0.5
LEGACY = {"mask_site": "output", "prune_by": "threshold", "max_drop": 0.1}


def planted_budget() -> CleanBudget:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    masks = (images[:, 1] > images[:, 0]).long()
    return CleanBudget(images, masks, ("a", "b"), torch.device("cpu"), 4)


@pytest.mark.parametrize("params", [{"prune_max": 1}, {"prune_max": 1, "bn_stats": "batch"}, LEGACY])
def test_noise_exposes_the_dormant_channel_and_only_it_is_pruned(params: dict) -> None:
    defense = registry.get("anp").create({"iterations": 30, **params})
    repaired = defense.fit(Planted(), planted_budget()).model
    assert repaired.bn.weight.tolist() == pytest.approx([GAMMA, GAMMA, 0.0])
    assert defense.report["pruned_channels"] == 1
    assert defense.report["mask_below_0.2"] == 1  # the official fixed threshold would prune it too
    assert defense.report["holdout_miou_before"] == defense.report["holdout_miou_after"] > 0.99
    assert not any(hasattr(m, "_forward_hooks") and m._forward_hooks for m in repaired.modules())


def test_without_noise_nothing_is_exposed() -> None:
    defense = registry.get("anp").create({"iterations": 30, "eps": 0, "prune_max": 1})
    repaired = defense.fit(Planted(), planted_budget()).model
    assert repaired.bn.weight.tolist() == pytest.approx([GAMMA] * 3)
    assert defense.report["pruned_channels"] == 0 and defense.report["mask_below_0.2"] == 0


def test_candidate_thresholds() -> None:
    assert candidate_thresholds(0.25) == [0.25, 0.5, 0.75]
    assert candidate_thresholds(0.3) == [0.3, 0.6, 0.9]


@pytest.mark.parametrize("params", [{"eps": "-0.1"}, {"alpha": "1.5"}, {"iterations": "0"}, {"threshold_step": "1"},
                                    {"holdout": "0"}, {"max_drop": "2"}, {"mask_lr": "0"},
                                    {"prune_step": "0"}, {"prune_max": "2"}, {"bn_stats": "frozen"},
                                    {"mask_site": "after"}, {"prune_by": "ratio"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("anp").create(params)


def test_the_mask_acts_before_timms_activation() -> None:
    """A zero mask means what pruning means: the BatchNormAct2d channel emits act(beta)."""
    bn = BatchNormAct2d(2, act_layer=nn.ReLU).eval()
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([-1.0, 1.0]))
    x = torch.randn(3, 2, 4, 4)
    neurons = NeuronNoise(bn, "pre_activation")
    with torch.no_grad():
        neurons.masks[0].zero_()
        masked = bn(x)
    neurons.remove()
    with torch.no_grad():
        bn.weight.zero_()
        pruned = bn(x)
    torch.testing.assert_close(masked, pruned)
    assert torch.equal(pruned[:, 0], torch.zeros(3, 4, 4)) and torch.equal(pruned[:, 1], torch.ones(3, 4, 4))
