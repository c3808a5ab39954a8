"""Fine-pruning: the channel mask really silences channels on every zoo model; the defense
runs end to end, stops at the mIoU limit and leaves the input model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from benchmark.errors import BenchmarkError
from defenses import CleanBudget, registry
from defenses.pruning import MASK, add_channel_mask, find_classifier


SMP_ENTRIES = [name for name, entry in models.registry.items() if entry.library == "smp"]


@pytest.mark.parametrize("name", SMP_ENTRIES)
@torch.no_grad()
def test_mask_removes_channels_on_every_zoo_model(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(name, num_classes=4).eval()
    reference = copy.deepcopy(model)
    layer, conv = find_classifier(model, 4)
    assert layer.startswith("segmentation_head")
    mask = add_channel_mask(conv)
    side = max(64, models.registry.get(name).min_size)
    x, other = torch.rand(2, 3, side, side), torch.rand(2, 3, side, side)
    unmasked = model(x)
    torch.testing.assert_close(unmasked, reference(x))

    pruned = torch.arange(0, conv.in_channels, 2)
    mask[pruned] = 0
    dict(reference.named_modules())[layer].weight[:, pruned] = 0
    partial = model(x)
    torch.testing.assert_close(partial, reference(x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(partial, unmasked)

    mask.zero_()
    silenced = model(x)
    torch.testing.assert_close(silenced, model(other))
    torch.testing.assert_close(silenced, conv.bias.view(1, -1, 1, 1).expand_as(silenced))


@pytest.mark.parametrize(("name", "layer"), [("deeplabv3_resnet50", "classifier.4"), ("fcn_resnet50", "classifier.4"),
                                           ("lraspp_mobilenet_v3_large", "classifier.high_classifier")])
def test_torchvision_models_prune_their_classifier_not_the_auxiliary_head(name: str, layer: str) -> None:
    assert find_classifier(models.build(name, num_classes=4), 4)[0] == layer


def test_end_to_end_on_unet_leaves_the_input_model_alone(make_budget) -> None:
    torch.manual_seed(0)
    model = models.build("unet", num_classes=4)
    before = copy.deepcopy(model.state_dict())
    defense = registry.get("pruning").create({"epochs": "1", "step": "0.25"})
    predictor = defense.fit(model, make_budget(n=8))

    report = defense.report
    assert 0 <= report["pruned_fraction"] <= 1
    assert report["layer"] == "segmentation_head.0"
    assert report["total_channels"] == 16
    assert report["pruned_fraction"] == report["pruned_channels"] / report["total_channels"]
    for key in ("holdout_miou_before", "holdout_miou_after_pruning", "holdout_miou_after_finetune"):
        assert 0 <= report[key] <= 1
    repaired = predictor.model
    assert int((getattr(repaired.segmentation_head[0], MASK) == 0).sum()) == report["pruned_channels"]
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in before.items())
    assert not hasattr(model.segmentation_head[0], MASK)
    labels, rejected = predictor.predict(torch.rand(2, 3, 64, 64))
    assert labels.shape == (2, 64, 64) and not rejected.any()


class Toy(nn.Module):
    """Features [10 x0, 10 x1, 0, 0] (two dormant channels); the head predicts x0 < x1."""

    def __init__(self) -> None:
        super().__init__()
        self.segmentation_head = nn.Sequential(nn.Conv2d(4, 2, 1))
        with torch.no_grad():
            self.segmentation_head[0].weight.copy_(torch.tensor([[1.0, -1, 0, 0], [-1, 1, 0, 0]]).view(2, 4, 1, 1))
            self.segmentation_head[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(F.pad(10 * x[:, :2], (0, 0, 0, 0, 0, 2)))


def _toy_budget() -> CleanBudget:
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    masks = (images[:, 0] < images[:, 1]).long()
    return CleanBudget(images, masks, ("a", "b"), torch.device("cpu"), 4)


@pytest.mark.parametrize("max_drop, expected", [(0.0, [1.0, 1.0, 0.0, 0.0]), (1.0, [0.0] * 4)])
def test_pruning_stops_at_the_last_mask_within_the_limit(max_drop: float, expected: list[float]) -> None:
    """Dormant channels go first at no cost; the next step breaks the toy's predictions."""
    defense = registry.get("pruning").create({"step": 0.25, "max_drop": max_drop, "epochs": 0})
    repaired = defense.fit(Toy(), _toy_budget()).model
    assert defense.report["holdout_miou_before"] == 1.0
    assert getattr(repaired.segmentation_head[0], MASK).tolist() == expected
    assert defense.report["pruned_channels"] == expected.count(0.0)


def test_layer_parameter(make_budget) -> None:
    model = Toy()
    assert find_classifier(model, 2, "segmentation_head.0")[0] == "segmentation_head.0"
    with pytest.raises(BenchmarkError, match="candidates: segmentation_head.0"):
        find_classifier(model, 2, "segmentation_head.1")
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 4, 1))
    assert find_classifier(plain, 4)[0] == "2"
    with pytest.raises(BenchmarkError, match="layer"):
        find_classifier(plain, 5)


@pytest.mark.parametrize("params", [{"step": "0"}, {"step": "1.5"}, {"max_drop": "-0.1"}, {"holdout": "1"},
                                    {"epochs": "-1"}, {"lr": "0"}, {"epochs": "two"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("pruning").create(params)
