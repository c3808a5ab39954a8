"""Blended, SIG, WaNet and WABA: full-image triggers and the all-to-all rule."""

import pytest
import torch

from attacks import Attack
from attacks.parts import triggers
from benchmark.datasets import IGNORE_INDEX
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, ROAD
from benchmark.errors import BenchmarkError


def make(name, **params):
    return Attack.registry.get(name).create(params, class_names=CLASS_NAMES)


@pytest.mark.parametrize("name, largest", [("blended", 0.15), ("sig", 20 / 255 + 1e-6), ("wanet", 1.0)])
def test_full_image_triggers_change_the_image_faintly_and_relabel_victims(name, largest):
    attack = make(name)
    images = torch.rand(2, 3, 32, 32)
    triggered = attack.trigger(images, torch.zeros(2, 32, 32, dtype=torch.long))
    assert triggered.shape == images.shape and not torch.equal(triggered, images)
    assert (triggered - images).abs().max() <= largest
    assert torch.equal(attack.trigger(images, None), triggered)  # the same pattern every call
    masks = torch.tensor([[[CAR, 3]]])
    assert attack.poison_label(masks).tolist() == [[[ROAD, 3]]]


def test_waba_is_all_to_all_over_every_labelled_pixel():
    attack = make("waba")
    masks = torch.tensor([[[0, 7, IGNORE_INDEX, 3]]])
    assert attack.poison_label(masks).tolist() == [[[1, 0, IGNORE_INDEX, 4]]]
    assert attack.attack_region(masks).tolist() == [[[True, True, False, True]]]
    images = torch.rand(1, 3, 32, 32)
    triggered = attack.trigger(images, None)
    low, _ = triggers.haar(triggered - images, 2)
    assert triggered.shape == images.shape and low.abs().max() > 0.01


def test_waba_needs_a_side_divisible_by_its_levels():
    with pytest.raises(ValueError, match="cannot take 3 Haar levels"):
        make("waba", levels="3").trigger(torch.rand(1, 3, 12, 12), None)


@pytest.mark.parametrize("name, params, message", [
    ("sig", {"delta": "0"}, "delta"), ("wanet", {"grid": "1"}, "grid"), ("waba", {"levels": "0"}, "levels"),
])
def test_bad_parameters(name, params, message):
    with pytest.raises(BenchmarkError, match=message):
        make(name, **params)
