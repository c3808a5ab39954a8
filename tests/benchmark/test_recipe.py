"""The real-scale training recipe: optimiser and schedule choices, the auxiliary loss,
non-square sizes, deterministic crops, and keys that stay put at the defaults."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmark.datasets import DatasetConfig, synthetic
from benchmark.engine import TrainConfig, logits_of, make_optimizer, segmentation_loss, train, train_step
from benchmark.errors import BenchmarkError

pytestmark = pytest.mark.usefixtures("one_thread")


class AuxNet(nn.Module):
    """A torchvision-shaped model: ``{"out", "aux"}`` from two 1x1 heads."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.classifier = nn.Conv2d(4, classes, 1)
        self.aux_classifier = nn.Conv2d(4, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x).relu()
        return {"out": self.classifier(features), "aux": self.aux_classifier(features)}


def test_train_config_key_is_the_old_one_at_the_defaults():
    assert TrainConfig().key() == {"epochs": 7, "batch_size": 32, "lr": 5e-3, "weight_decay": 1e-4}
    assert TrainConfig(compile=True).key() == TrainConfig().key()
    recipe = TrainConfig(optimizer="sgd", lr=0.01, crop_size=(32, 48), aux_weight=0.5).key()
    assert recipe["optimizer"] == "sgd" and recipe["crop_size"] == (32, 48) and recipe["aux_weight"] == 0.5


def test_a_square_pair_is_the_old_square_size():
    assert DatasetConfig(image_size=(64, 64)) == DatasetConfig(image_size=64)
    assert DatasetConfig(image_size=(64, 64)).key() == DatasetConfig().key()
    wide = DatasetConfig(image_size=(32, 64))
    assert wide.size == (32, 64) and wide.key()["image_size"] == (32, 64)


@pytest.mark.parametrize("field", ["train_size", "test_size"])
def test_zero_images_is_an_error_not_the_default_count(field):
    with pytest.raises(BenchmarkError, match=f"--{field.replace('_', '-')} must be at least 1, got 0"):
        DatasetConfig(**{field: 0})


def test_synthetic_scenes_come_non_square():
    wide = synthetic.generate(3, (32, 64), seed=0)
    assert wide.images.shape == (3, 3, 32, 64) and wide.masks.shape == (3, 32, 64)
    assert torch.equal(synthetic.generate(3, (32, 32), seed=0).images, synthetic.generate(3, 32, seed=0).images)


def test_sgd_follows_the_poly_schedule():
    model = nn.Conv2d(3, 2, 1)
    optimizer, schedule = make_optimizer(model, TrainConfig(optimizer="sgd", lr=0.01, momentum=0.9), 10)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["weight_decay"] == 1e-4
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.01 * (1 - step / 10) ** 0.9 for step in range(10)]
    assert rates == pytest.approx(expected, rel=1e-6)
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_adamw_one_cycle_stays_the_default():
    optimizer, schedule = make_optimizer(nn.Conv2d(3, 2, 1), TrainConfig(), 100)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert isinstance(schedule, torch.optim.lr_scheduler.OneCycleLR)


def test_the_auxiliary_head_is_trained_with_its_weight():
    torch.manual_seed(0)
    model, images, masks = AuxNet(), torch.rand(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    output = model(images)
    main = segmentation_loss(output["out"], masks, 0.4)
    aux = segmentation_loss(output["aux"], masks, 0.4)
    torch.testing.assert_close(segmentation_loss(output, masks, 0.4), main + 0.4 * aux)
    before = model.aux_classifier.weight.detach().clone()
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), images, masks, torch.device("cpu"))
    assert not torch.equal(before, model.aux_classifier.weight)
    frozen = model.aux_classifier.weight.detach().clone()
    train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), images, masks, torch.device("cpu"), aux_weight=0.0)
    assert torch.equal(frozen, model.aux_classifier.weight)


def test_predictions_come_from_the_main_head():
    model = AuxNet().eval()
    images = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(logits_of(model, images), model(images)["out"].detach())


def _trained(config: TrainConfig) -> nn.Module:
    data = synthetic.generate(6, (16, 24), seed=0)
    torch.manual_seed(0)
    model = AuxNet(len(synthetic.CLASS_NAMES))
    train(model, data.images, data.masks, config, torch.device("cpu"), seed=0)
    return model


def test_training_on_crops_is_deterministic_and_differs_from_whole_images():
    config = TrainConfig(epochs=2, batch_size=3, optimizer="sgd", lr=0.05, crop_size=(16, 16))
    first, second = _trained(config), _trained(config)
    whole = _trained(dataclasses.replace(config, crop_size=None))
    for a, b, c in zip(first.parameters(), second.parameters(), whole.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(first.parameters(), whole.parameters()))


@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer": "adam"}, "--optimizer must be one of adamw, sgd"),
    ({"momentum": 1.0}, r"--momentum must be in \[0, 1\)"),
    ({"weight_decay": -1.0}, "--weight-decay must be >= 0"),
    ({"aux_weight": -0.4}, "--aux-weight must be >= 0"),
    ({"crop_size": (4, 32)}, "--crop-size sides must be at least 8"),
])
def test_bad_recipe_values_are_one_line_errors(change, message):
    with pytest.raises(BenchmarkError, match=message):
        TrainConfig(**change)
