"""The harness of training-time defenses: the hidden poison indicator, the scoring of flags
against it, and the training set rebuilt without the flagged samples."""

import math

import pytest
import torch

from benchmark.datasets import IGNORE_INDEX
from benchmark.engine import TrainConfig
from benchmark.errors import BenchmarkError
from benchmark.retrain import checked, filtered_set, flag_metrics, segment_truth
from defenses.training import Flags, PoisonedTrainingSet


def dataset(masks: torch.Tensor, num_classes: int = 3) -> PoisonedTrainingSet:
    images = torch.arange(len(masks), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, *masks.shape[1:]).clone()
    return PoisonedTrainingSet(images, masks, tuple(f"c{i}" for i in range(num_classes)), torch.device("cpu"),
                               lambda: None, TrainConfig(epochs=1), 0)


def test_image_flags_are_scored_against_the_hidden_indicator():
    flags = Flags(torch.tensor([0.9, 0.8, 0.3, 0.1]), torch.tensor([True, True, False, False]))
    record = flag_metrics(flags, torch.tensor([True, False, True, False]), None)
    # positives 0.9, 0.3 against negatives 0.8, 0.1: 3 of 4 pairs ranked right
    assert record["poison_detection_auroc"] == 0.75
    assert record["poison_detection_precision"] == 0.5 and record["poison_detection_recall"] == 0.5
    assert (record["flagged_samples"], record["poisoned_samples"], record["samples"]) == (2, 2, 4)
    assert record["poison_detection_level"] == "image"


def test_segment_flags_count_only_segments_that_exist():
    scores = torch.tensor([[0.9, math.nan], [0.2, 0.5]])
    flagged = torch.tensor([[True, True], [False, True]])  # a flag on a missing segment is ignored
    truth = torch.tensor([[True, False], [False, False]])
    present = torch.tensor([[True, False], [True, True]])
    record = flag_metrics(Flags(scores, flagged), truth, present)
    assert record["poison_detection_auroc"] == 1.0
    assert record["poison_detection_precision"] == 0.5 and record["poison_detection_recall"] == 1.0
    assert (record["flagged_samples"], record["samples"], record["poison_detection_level"]) == (2, 3, "segment")


def test_a_segment_is_poisoned_where_the_label_rule_changed_it():
    original = torch.tensor([[[0, 1], [2, 2]], [[0, 1], [2, 2]], [[1, 1], [2, IGNORE_INDEX]]])
    poisoned = torch.tensor([[[0, 0], [2, 2]], [[0, 1], [2, 2]], [[1, 1], [2, IGNORE_INDEX]]])
    images = torch.tensor([True, False, True])  # image 2 poisoned with no label change (clean-label)
    truth = segment_truth(original, poisoned, images, num_classes=3)
    assert truth.tolist() == [[True, False, False], [False, False, False], [False, True, True]]


def test_flagged_images_are_dropped_and_flagged_segments_ignored():
    masks = torch.tensor([[[0, 1], [2, 2]], [[1, 1], [0, IGNORE_INDEX]]])
    data = dataset(masks)
    images, kept = filtered_set(data, Flags(torch.zeros(2), torch.tensor([True, False])))
    assert torch.equal(images, data.images[1:]) and torch.equal(kept, masks[1:])
    segment_flags = torch.tensor([[False, False, True], [True, False, False]])
    images, kept = filtered_set(data, Flags(torch.zeros(2, 3), segment_flags))
    assert torch.equal(images, data.images)
    assert kept.tolist() == [[[0, 1], [IGNORE_INDEX, IGNORE_INDEX]], [[1, 1], [IGNORE_INDEX, IGNORE_INDEX]]]
    assert data.present().tolist() == [[True, True, True], [True, True, False]]
    images, kept = filtered_set(data, Flags(torch.zeros(2, 3), torch.tensor([[True, True, True], [True, False, False]])))
    assert torch.equal(images, data.images[1:])  # nothing of image 0 is left: it is dropped
    assert kept.tolist() == [[[1, 1], [IGNORE_INDEX, IGNORE_INDEX]]]


def test_flags_of_the_wrong_shape_are_one_clear_error():
    data = dataset(torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(BenchmarkError, match="expected"):
        checked(Flags(torch.zeros(3), torch.zeros(3, dtype=torch.bool)), data, "mine")
    with pytest.raises(ValueError):
        Flags(torch.zeros(3), torch.zeros(2, dtype=torch.bool))
