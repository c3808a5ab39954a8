"""Neural Cleanse: on a hand-built model with a planted backdoor class, the reversed masks of
the other classes are large, the planted class's is tiny, MAD flags it and unlearning
weakens it; a model without a planted class is left as it is."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import CleanBudget, registry
from defenses.neural_cleanse import anomaly_indices, initial_trigger, legacy_anomaly_indices, squash

COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.5, 0.5, 0.1]])


class NearestColour(nn.Module):
    """Labels each pixel with the nearest of four colours; with ``backdoor`` a white 2x2 patch in
    the top-left corner turns every pixel into class 3 (the colours' patches average 0.37, far
    below the patch's 1)."""

    def __init__(self, backdoor: bool) -> None:
        super().__init__()
        self.colours = nn.Parameter(COLOURS.clone())
        self.strength = nn.Parameter(torch.tensor(200.0 if backdoor else 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distance = ((x.unsqueeze(1) - self.colours.view(1, 4, 3, 1, 1)) ** 2).sum(dim=2)
        patch = x[:, :, :2, :2].mean(dim=(1, 2, 3))
        trigger = self.strength * nn.functional.softplus(10 * (patch - 0.6)) / 10  # ~2 on clean patches
        return -20 * distance + torch.stack([torch.zeros_like(trigger)] * 3 + [trigger], dim=1).view(-1, 4, 1, 1)


def stripes_budget() -> CleanBudget:
    """16x16 images of four vertical colour stripes in a random order, with light noise."""
    generator = torch.Generator().manual_seed(0)
    images, masks = [], []
    for _ in range(8):
        order = torch.randperm(4, generator=generator)
        labels = order.repeat_interleave(4).expand(16, 16)
        noise = 0.05 * torch.randn(3, 16, 16, generator=generator)
        images.append(((COLOURS[labels].permute(2, 0, 1) + noise).clamp(0, 1) * 255).round().to(torch.uint8))
        masks.append(labels.clone())
    return CleanBudget(torch.stack(images), torch.stack(masks), ("c0", "c1", "c2", "c3"), torch.device("cpu"), 4)


LEGACY = {"objective": "easiest_source", "early_stop": False, "unfound": "area"}


@pytest.mark.parametrize("params", [{}, LEGACY, {"mask_init": "random"}])
def test_mad_flags_the_planted_class_and_unlearning_weakens_it(params: dict) -> None:
    model = NearestColour(backdoor=True)
    defense = registry.get("neural_cleanse").create({"steps": 60, "unlearn_epochs": 3, "unlearn_lr": 0.5, **params})
    repaired = defense.fit(model, stripes_budget()).model
    report = defense.report
    norms = report["mask_norms"]
    assert report["flagged_class"] == "c3" and report["anomaly_index"] > 2
    assert norms["c3"] < 10 < min(norms["c0"], norms["c1"], norms["c2"])
    assert repaired is not model and float(repaired.strength) < float(model.strength) == 200.0


def test_a_model_without_a_planted_class_is_left_alone() -> None:
    model = NearestColour(backdoor=False)
    defense = registry.get("neural_cleanse").create({"steps": 60})
    assert defense.fit(model, stripes_budget()).model is model
    assert defense.report["flagged_class"] is None


def test_the_random_start_is_uniform_and_seeded_by_the_target() -> None:
    shape = torch.Size((32, 32))
    mask, pattern = (squash(v.detach()) for v in initial_trigger("random", shape, 3, torch.device("cpu")))
    assert mask.shape == (1, 1, 32, 32) and pattern.shape == (1, 3, 32, 32)
    assert 0 <= float(mask.min()) and float(mask.max()) <= 1 and abs(float(mask.mean()) - 0.5) < 0.05
    again = squash(initial_trigger("random", shape, 3, torch.device("cpu"))[0].detach())
    other = squash(initial_trigger("random", shape, 4, torch.device("cpu"))[0].detach())
    assert torch.equal(mask, again) and not torch.equal(mask, other)
    faint = squash(initial_trigger("faint", shape, 3, torch.device("cpu"))[0].detach())
    torch.testing.assert_close(faint, torch.full_like(faint, 0.1))


def test_anomaly_index_is_the_deviation_in_robust_standard_deviations() -> None:
    norms = torch.tensor([10.0, 11.0, 9.0, 10.0, 1.0])
    # median 10, MAD 1: the outlier lies 9 / 1.4826 robust standard deviations away
    expected = torch.tensor([0.0, 1, 1, 0, 9]) / 1.4826
    torch.testing.assert_close(anomaly_indices(norms, torch.ones(5, dtype=torch.bool)), expected)
    torch.testing.assert_close(legacy_anomaly_indices(norms), expected)


def test_an_even_count_takes_the_median_as_numpy_does() -> None:
    """Eight classes, as ``synthetic`` has: median (8 + 10) / 2 = 9, sorted deviations
    1 1 2 2 3 3 5 8, MAD (2 + 3) / 2 = 2.5 (``Tensor.median`` would give 8 and 2)."""
    norms = torch.tensor([1.0, 6.0, 7.0, 8.0, 10.0, 11.0, 12.0, 14.0])
    expected = (norms - 9).abs() / (1.4826 * 2.5)
    torch.testing.assert_close(anomaly_indices(norms, torch.ones(8, dtype=torch.bool)), expected)


def test_unfound_classes_do_not_make_the_mad_zero() -> None:
    """Most classes unfound: the legacy area norms make the MAD 0 and every found class an
    outlier; excluding them keeps the index finite and ordinary."""
    norms = torch.tensor([100.0, 110.0, 90.0] + [float("nan")] * 4)
    found = ~norms.isnan()
    indices = anomaly_indices(norms, found)
    assert indices.isfinite().all() and indices.max() < 1 and indices[~found].eq(0).all()
    assert legacy_anomaly_indices(torch.where(found, norms, torch.tensor(4096.0)))[:3].min() > 1000
    assert anomaly_indices(torch.tensor([5.0, 5.0, 5.0, 1.0]), torch.ones(4, dtype=torch.bool))[3] < 60  # MAD floor
    assert anomaly_indices(norms[1:], found[1:]).eq(0).all()  # two found: nothing to compare


@pytest.mark.parametrize("params", [{"steps": "0"}, {"success": "0"}, {"unlearn_fraction": "2"},
                                    {"anomaly_threshold": "0"}, {"lr": "0"}, {"objective": "some"},
                                    {"unfound": "zero"}, {"early_stop_patience": "0"}, {"mask_init": "zero"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("neural_cleanse").create(params)
