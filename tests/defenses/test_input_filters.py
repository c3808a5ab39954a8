"""Input filters: identity strengths change nothing, real strengths do what they say, and
ShrinkPad's inversion maps predictions back onto the original pixels."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.engine import to_input
from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.base import ModelPredictor

FILTERS = ("median", "gaussian", "jpeg", "bit_depth", "shrink_pad")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))


def _smooth(batch: int = 2, size: int = 64) -> torch.Tensor:
    """Low-frequency images, which resampling barely changes."""
    axis = torch.linspace(0, math.pi, size)
    phase = torch.arange(batch * 3, dtype=torch.float32).view(batch, 3, 1, 1)
    return 0.5 + 0.4 * torch.sin(axis.view(1, 1, -1, 1) + phase) * torch.cos(axis.view(1, 1, 1, -1) / 2)


@pytest.mark.parametrize("name, params", [("gaussian", {"sigma": 0}), ("bit_depth", {"bits": 8}),
                                          ("median", {"kernel": 1}), ("shrink_pad", {"shrink": 0})])
def test_identity_strengths_leave_predictions_unchanged(name: str, params: dict, make_budget) -> None:
    model, budget = _model(), make_budget(n=4)
    images = to_input(torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8))
    defense = registry.get(name).create(params)
    assert torch.equal(defense.filter(images), images)
    labels, rejected = defense.fit(model, budget).predict(images)
    assert torch.equal(labels, ModelPredictor(model).predict(images)[0])
    assert not rejected.any()


@pytest.mark.parametrize("name", FILTERS)
def test_filters_keep_shape_and_range(name: str) -> None:
    images = torch.rand(2, 3, 32, 32)
    filtered = registry.get(name).create().filter(images)
    assert filtered.shape == images.shape and filtered.dtype == images.dtype
    assert filtered.min() >= 0 and filtered.max() <= 1
    assert not torch.equal(filtered, images)


def test_median_removes_an_isolated_pixel_and_keeps_edges() -> None:
    images = torch.zeros(1, 3, 32, 32)
    images[..., :, 16:] = 1
    spotted = images.clone()
    spotted[..., 5, 5] = 1
    assert torch.equal(registry.get("median").create({"kernel": 3}).filter(spotted), images)


def test_gaussian_keeps_constants_and_smooths() -> None:
    blur = registry.get("gaussian").create({"sigma": 1.5})
    flat = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(blur.filter(flat), flat)
    noise = torch.rand(1, 3, 32, 32)
    assert blur.filter(noise).std() < noise.std() / 2


def test_jpeg_quality_orders_the_error() -> None:
    images = _smooth()
    errors = [(registry.get("jpeg").create({"quality": q}).filter(images) - images).abs().mean() for q in (100, 10)]
    assert errors[0] < 0.01 < errors[1]


def test_bit_depth_levels() -> None:
    images = torch.rand(2, 3, 16, 16)
    assert set(registry.get("bit_depth").create({"bits": 1}).filter(images).unique().tolist()) <= {0.0, 1.0}
    assert len(registry.get("bit_depth").create({"bits": 2}).filter(images).unique()) <= 4


@pytest.mark.parametrize("offset", ["random", "center"])
def test_shrink_pad_round_trip_recovers_the_image(offset: str, make_budget) -> None:
    defense = registry.get("shrink_pad").create({"shrink": 4, "offset": offset})
    predictor = defense.fit(_model(), make_budget(n=2))
    images = _smooth()
    for _ in range(3):  # several (random) offsets
        filtered = defense.filter(images)
        top, left = defense._top_left
        assert filtered[..., :top, :].eq(0).all() and filtered[..., :, :left].eq(0).all()
        restored = defense.invert(filtered)  # "logits = the image itself"
        assert restored.shape == images.shape
        assert (restored - images)[..., 4:-4, 4:-4].abs().max() < 0.005  # one pixel off: ~0.02
    labels, _ = predictor.predict(images)
    assert labels.shape == (2, 64, 64)


def test_shrink_pad_offsets_repeat_after_fit(make_budget) -> None:
    defense = registry.get("shrink_pad").create({"shrink": 8, "seed": 3})
    images, budget = torch.rand(1, 3, 32, 32), make_budget(n=2)

    def offsets() -> list[tuple[int, int]]:
        defense.fit(_model(), budget)
        drawn = []
        for _ in range(5):
            defense.filter(images)
            drawn.append(defense._top_left)
        return drawn

    first = offsets()
    assert first == offsets() and len(set(first)) > 1


@pytest.mark.parametrize("name, params", [
    ("median", {"kernel": "2"}), ("median", {"kernel": "0"}), ("median", {"kernel": "x"}),
    ("gaussian", {"sigma": "-1"}), ("gaussian", {"radius": "1"}),
    ("jpeg", {"quality": "0"}), ("jpeg", {"quality": "101"}),
    ("bit_depth", {"bits": "0"}), ("bit_depth", {"bits": "9"}),
    ("shrink_pad", {"shrink": "-1"}), ("shrink_pad", {"offset": "left"}),
])
def test_bad_parameters(name: str, params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get(name).create(params)


def test_shrink_larger_than_the_image_is_a_clear_error() -> None:
    with pytest.raises(BenchmarkError, match="shrink"):
        registry.get("shrink_pad").create({"shrink": 16}).filter(torch.rand(1, 3, 16, 16))
