"""The one rule detectors share to turn a per-pixel score map into one score per image."""

import pytest
import torch

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.pixel_detection import aggregate, class_statistics

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


def test_standardising_per_predicted_class_lets_a_region_of_a_stable_class_stand_out():
    # clean: class 0 (sky) is stable by nature, class 1 (car) is not
    clean_scores = torch.tensor([[[1.0, 1.0, 1.0, 0.9], [0.0, 0.2, 0.4, 0.2]]])
    clean_labels = torch.tensor([[[0, 0, 0, 0], [1, 1, 1, 1]]])
    mean, std = class_statistics(clean_scores, clean_labels, num_classes=2)
    assert mean.tolist() == pytest.approx([0.975, 0.2]) and std[1].item() == pytest.approx(0.163299, rel=1e-4)
    # a triggered car that became as stable as the sky: raw, it ties with the sky; standardised, it stands out
    suspicious = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]])
    z = (suspicious - mean[torch.tensor([[[1, 1, 0, 0]]])]) / std[torch.tensor([[[1, 1, 0, 0]]])]
    assert z[0, 0, 0] > 4 and z[0, 0, 2] < 1


def test_detectors_standardise_with_the_calibration_part_of_the_budget(make_budget):
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0], 1 - x[:, 0]], dim=1)

    defense = registry.get("scale_up").create({"scales": "2", "standardize": "true"})
    budget = make_budget(n=6, size=8, num_classes=2)
    defense.setup(Constant(), budget)
    mean, std = defense._statistics
    raw = registry.get("scale_up").create({"scales": "2", "standardize": "false"})
    scores, labels = raw.pixel_scores(Constant(), budget.float_images())
    assert torch.allclose(mean, class_statistics(scores, labels, 2)[0])
