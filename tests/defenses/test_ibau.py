"""I-BAU: the universal perturbation raises the loss within its L2 bound, at least one image
of every outer batch carries it, and MobileNetV3's hard sigmoid gets a second derivative."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.ibau import hardsigmoid_twice_differentiable, perturb
from defenses.repair import pixel_ce_of


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Hardsigmoid(), nn.Conv2d(8, 4, 1)).eval()


@pytest.mark.parametrize("inner", ["mean", "pixel_sum"])
def test_universal_perturbation_raises_its_loss_within_its_bound(make_budget, inner: str) -> None:
    """The official search ascends the cross-entropy against the model's own clean predictions
    (legacy: against the true labels, summed over pixels, so large enough to reach the bound)."""
    budget = make_budget(n=4, size=8)
    model = small_model()
    defense = registry.get("ibau").create({"max_rms": 0.05, "inner": inner})
    radius = 0.05 * (3 * 8 * 8) ** 0.5
    delta = defense.universal_perturbation(model, budget, torch.Generator().manual_seed(0), radius)
    assert 0 < float(delta.norm()) <= radius * (1 + 1e-5)
    images, masks = next(budget.batches(4))
    with torch.no_grad():
        target = model(images).argmax(dim=1) if inner == "mean" else masks
        assert pixel_ce_of(model(images + delta), target) > pixel_ce_of(model(images), target)


@pytest.mark.parametrize("batch, fraction, carried", [(2, 0.01, 1), (32, 0.01, 1), (8, 0.5, 4), (3, 1.0, 3)])
def test_at_least_one_image_carries_the_perturbation(batch: int, fraction: float, carried: int) -> None:
    images, delta = torch.zeros(batch, 3, 4, 4), torch.ones(1, 3, 4, 4)
    changed = (perturb(images, delta, fraction) != images).flatten(1).any(dim=1)
    assert int(changed.sum()) == carried


def test_hard_sigmoid_gets_a_second_derivative() -> None:
    gate = nn.Hardsigmoid()
    x = torch.linspace(-4, 4, 17, requires_grad=True)
    gate.register_forward_hook(hardsigmoid_twice_differentiable)
    y = gate(x)
    torch.testing.assert_close(y, F.hardsigmoid(x))
    (gradient,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    torch.autograd.grad((gradient * x).sum(), x)  # raises without the hook


def test_repair_leaves_the_input_model_alone_and_reports(make_budget) -> None:
    model = small_model()
    weight = model[0].weight.detach().clone()
    defense = registry.get("ibau").create({"rounds": 1, "steps_per_round": 3, "fixed_point_iterations": 2})
    repaired = defense.fit(model, make_budget(n=4, size=8)).model
    assert torch.equal(model[0].weight, weight) and not torch.equal(repaired[0].weight, weight)
    assert len(defense.report["perturbation_norms"]) == 1
    assert not repaired[2]._forward_hooks


@pytest.mark.parametrize("params", [{"rounds": "0"}, {"max_rms": "0"}, {"perturbed_fraction": "0"},
                                    {"perturbed_fraction": "1.5"}, {"fixed_point_iterations": "0"},
                                    {"fixed_point_step": "0"}, {"inner": "sum"}, {"steps_per_round": "-1"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("ibau").create(params)


@pytest.mark.parametrize("steps, expected", [(0, 2), (3, 3), (5, 5)])
def test_a_round_takes_its_steps_from_reshuffled_passes_over_the_budget(make_budget, steps: int, expected: int) -> None:
    """The official round is 50 batches; a 2-batch budget is cycled to give them (0: one pass, legacy)."""
    budget = make_budget(n=4, size=8, batch_size=2)  # two batches
    defense = registry.get("ibau").create({"steps_per_round": steps})
    assert len(list(defense.round_batches(budget, torch.Generator().manual_seed(0)))) == expected
