"""The one rule detectors share to turn a per-pixel score map into one score per image."""

import pytest
import torch

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.pixel_detection import aggregate

MAP = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])  # one image, two suspicious pixels of 8
LABELS = torch.tensor([[[0, 0, 0, 0], [0, 0, 2, 2]]])


def test_mean_dilutes_a_small_region_that_a_quantile_or_a_class_keeps():
    assert aggregate(MAP, LABELS, "mean", 0.99).item() == 0.25
    assert aggregate(MAP, LABELS, "quantile", 0.99).item() == 1.0
    assert aggregate(MAP, LABELS, "quantile", 0.5).item() == 0.0
    assert aggregate(MAP, LABELS, "class_max", 0.99).item() == 1.0  # class 2 is all suspicious


def test_class_max_averages_over_each_predicted_class():
    merged = torch.zeros_like(LABELS)  # the suspicious pixels predicted as the big class, as a fine-grained trigger does
    assert aggregate(MAP, merged, "class_max", 0.99).item() == 0.25
    split = torch.tensor([[[0, 0, 1, 1], [1, 1, 1, 1]]])
    assert aggregate(MAP, split, "class_max", 0.99).item() == pytest.approx(2 / 6)


@pytest.mark.parametrize("name", ["teco", "scale_up", "ibd_psc", "beatrix"])
@pytest.mark.parametrize("params", [{"aggregate": "max"}, {"quantile": "1.5"}, {"fpr": "1"}])
def test_every_detector_checks_the_shared_parameters(name, params):
    with pytest.raises(BenchmarkError):
        registry.get(name).create(params)
