"""NAD: the attention loss is zero for identical models and grows with the difference; the
features come from the last encoder stages of an smp model or from named layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import models
from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.nad import attention_loss, attention_map
from defenses.repair import stage_features


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return models.build("unet", num_classes=4).eval()


def test_attention_map_is_the_normalised_channel_energy() -> None:
    features = torch.zeros(1, 2, 2, 2)
    features[0, 0, 0, 0], features[0, 1, 1, 1] = 3.0, -4.0
    assert torch.allclose(attention_map(features, 2.0), torch.tensor([[9.0, 0, 0, 16]]) / (81 + 256) ** 0.5)


def test_attention_loss_is_zero_for_identical_models_and_positive_otherwise(unet: nn.Module) -> None:
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        _, maps = stage_features(unet, (), 3, x, "nad")
        _, same = stage_features(copy.deepcopy(unet), (), 3, x, "nad")
        other = copy.deepcopy(unet)
        convs = [m for m in other.encoder.modules() if isinstance(m, nn.Conv2d)]
        convs[len(convs) // 2].weight.mul_(-3)
        _, different = stage_features(other, (), 3, x, "nad")
    assert [m.shape[-1] for m in maps] == [16, 8, 4]  # the last three stages of a 64x64 input
    assert float(attention_loss(maps, same, (500.0, 1000.0, 1000.0), 2.0)) == 0.0
    assert float(attention_loss(maps, different, (500.0, 1000.0, 1000.0), 2.0)) > 0


def test_named_layers_and_missing_ones(unet: nn.Module) -> None:
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _, maps = stage_features(unet, ("decoder", "segmentation_head.0"), 2, x, "nad")
    assert [m.shape[1] for m in maps] == [16, 4]
    with pytest.raises(BenchmarkError, match="nad: layer 'decoderr' is not a module"):
        stage_features(unet, ("decoderr",), 1, x, "nad")
    with pytest.raises(BenchmarkError, match="no 'encoder' module"):
        stage_features(nn.Sequential(nn.Conv2d(3, 2, 1)), (), 1, x, "nad")


@pytest.mark.parametrize("params", [{"betas": "500,-1"}, {"epochs": "0"}, {"power": "0"},
                                    {"layers": "a,b", "betas": "1"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("nad").create(params)
