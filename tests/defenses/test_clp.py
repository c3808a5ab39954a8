"""CLP: exactly the channels whose Lipschitz upper bound exceeds mean + u * std are zeroed;
a model without BatchNorm in its encoder is refused in one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.clp import channel_lipschitz_bounds, conv_bn_pairs


def conv_bn_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 2, 1))
    with torch.no_grad():
        model[0].weight[5] *= 3  # one planted high-Lipschitz channel
        model[1].running_var.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    return model.eval()


def test_bounds_are_the_top_singular_value_times_the_bn_scale() -> None:
    model = conv_bn_model()
    conv, bn = model[0], model[1]
    bounds = channel_lipschitz_bounds(conv, bn)
    for k in range(16):
        expected = torch.linalg.svdvals(conv.weight[k].reshape(3, 9)).max() * bn.weight[k].abs() / (
            bn.running_var[k] + bn.eps).sqrt()
        torch.testing.assert_close(bounds[k], expected.detach())


@pytest.mark.parametrize("u", [3.0, 0.5])
def test_clp_zeroes_exactly_the_channels_above_mean_plus_u_std(make_budget, u: float) -> None:
    model = conv_bn_model()
    bounds = channel_lipschitz_bounds(model[0], model[1])
    expected = set(torch.nonzero(bounds > bounds.mean() + u * bounds.std()).flatten().tolist())
    assert expected == {5} if u == 3 else {5} < expected  # the planted channel alone at u = 3
    defense = registry.get("clp").create({"u": u})
    repaired = defense.fit(model, make_budget(n=2, size=8, num_classes=2)).model
    zeroed = {k for k in range(16) if repaired[1].weight[k] == 0 and repaired[1].bias[k] == 0}
    assert zeroed == expected
    kept = sorted(set(range(16)) - expected)
    assert torch.equal(repaired[1].weight[kept], model[1].weight[kept])  # the input model is untouched
    assert defense.report["pruned_channels"] == len(expected)


def test_pairs_are_traced_through_the_forward_pass() -> None:
    """A BatchNorm registered before its conv still pairs with it; one after a ReLU does not."""

    class Reordered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(3, 4, 1)
            self.late = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.late(torch.relu(self.bn(self.conv(x))))

    pairs = conv_bn_pairs(Reordered(), torch.Size([3, 8, 8]))
    assert [name for name, _, _ in pairs] == ["bn"]


def test_tracing_survives_a_group_norm_on_a_single_pixel() -> None:
    """FPN's GroupNorm sees one pixel per channel at the deepest stage of a small image."""
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.GroupNorm(4, 4))
    assert [name for name, _, _ in conv_bn_pairs(model, torch.Size([3, 8, 8]))] == ["1"]


def test_segformer_is_refused_in_one_line(make_budget) -> None:
    model = models.build("segformer", num_classes=4)
    with pytest.raises(BenchmarkError, match="clp: the model's encoder has no BatchNorm"):
        registry.get("clp").create().fit(model, make_budget(n=2, size=32))


@pytest.mark.parametrize("params", [{"u": "-1"}, {"u": "x"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("clp").create(params)
