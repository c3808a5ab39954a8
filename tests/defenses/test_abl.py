"""Anti-Backdoor Learning: the lowest-loss segments are isolated, set to ignore for training
and are the only labelled pixels of the unlearning stage, which stops once they are unlearned."""

import math

import pytest
import torch

from benchmark.datasets import IGNORE_INDEX
from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.abl import agreement, isolate, keep_segments, sample_losses, unlearn


def test_isolates_the_lowest_loss_segments_that_exist():
    losses = torch.tensor([[0.5, math.nan, 0.01], [2.0, 0.02, math.nan], [0.3, 1.0, 0.9]])
    assert isolate(losses, 0.25).tolist() == [[False, False, True], [False, True, False], [False, False, False]]
    assert isolate(losses, 0.01).sum() == 1  # at least one


def test_kept_masks_ignore_the_other_segments(planted):
    data = planted(n=2)
    keep = torch.tensor([[True, False], [False, False]])
    masks = keep_segments(data, keep)
    assert (masks[0, :, :4] == 0).all() and (masks[0, :, 4:] == IGNORE_INDEX).all()
    assert (masks[1] == IGNORE_INDEX).all()


def test_training_isolates_and_returns_segment_flags(planted):
    torch.manual_seed(0)
    data = planted(n=16)
    defense = registry.get("abl").create({"isolation_epochs": "1", "isolation_rate": "0.1", "unlearning_epochs": "1"})
    model, flags = defense.train_model(data)
    assert flags.level == "segment" and int(flags.flagged.sum()) == 4  # ceil(0.1 * 32 segments)
    assert defense.report["isolated_segments"] == 4 and defense.report["segments"] == 32
    losses = -flags.scores
    assert losses[flags.flagged].max() <= losses[~flags.flagged].min()
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 2, 8, 8)


def test_lga_floors_the_batch_mean_loss_or_each_segments_or_each_pixels():
    loss = torch.tensor([[[0.1, 0.3], [2.0, 4.0]]])
    masks = torch.tensor([[[0, 0], [1, IGNORE_INDEX]]])
    assert sample_losses(loss, masks, 2, "batch").tolist() == pytest.approx([0.8])  # official: the batch mean
    assert sample_losses(loss, masks, 2, "segment").tolist() == pytest.approx([0.2, 2.0])
    assert sample_losses(loss, masks, 2, "pixel").tolist() == pytest.approx([0.1, 0.3, 2.0])


def test_unlearning_stops_once_the_isolated_pixels_are_unlearned(planted):
    torch.manual_seed(0)
    data = planted(n=8)
    isolated = torch.zeros(8, 2, dtype=torch.bool)
    isolated[:4, 0] = True
    model = data.new_model()
    with torch.no_grad():
        model.segmentation_head.bias.copy_(torch.tensor([5.0, 0.0]))  # every pixel predicted class 0
    rows = isolated.any(dim=1).nonzero().flatten()
    images, masks = data.images[rows], keep_segments(data, isolated)[rows]
    before = agreement(model, images, masks)
    assert before == 1.0
    steps, (start, end) = unlearn(model, data, isolated, epochs=200, lr=0.5, stop=0.5)
    assert start == pytest.approx(before) and end <= 0.5 * start and 0 < steps < 200
    assert unlearn(data.new_model(), data, isolated, epochs=3, lr=1e-3, stop=0.0)[0] == 3  # legacy: every epoch


@pytest.mark.parametrize("params", [{"lga": "image"}, {"unlearning_stop": "1"}, {"isolation_epochs": "0"}, {"isolation_rate": "1"}, {"gamma": "-1"},
                                    {"unlearning_epochs": "-1"}, {"unlearning_lr": "0"}])
def test_bad_parameters(params):
    with pytest.raises(BenchmarkError):
        registry.get("abl").create(params)
