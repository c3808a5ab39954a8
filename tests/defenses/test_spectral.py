"""Spectral signatures: planted outliers score highest along the top singular direction and
are removed, 1.5 epsilon of each class."""

import pytest
import torch

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.spectral import spectral_scores

PLANTED = (3, 11, 17, 30)


def test_planted_outliers_score_highest():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(100, 8, generator=generator)
    points[[5, 50, 95]] += 6 * torch.ones(8)
    scores = spectral_scores(points)
    assert set(scores.topk(3).indices.tolist()) == {5, 50, 95}
    assert scores.mean().item() == pytest.approx(1.0)


def test_flags_the_planted_segments_of_their_class(planted):
    data = planted(red=PLANTED)
    defense = registry.get("spectral").create({"poison_fraction": "0.1"})
    flags = defense.flag(data.new_model(), data)
    assert flags.level == "segment" and flags.scores.shape == (40, 2)
    assert set(flags.scores[:, 0].topk(4).indices.tolist()) == set(PLANTED)
    assert flags.flagged.sum(dim=0).tolist() == [6, 6]  # ceil(1.5 * 0.1 * 40) per class, as in the paper
    assert flags.flagged[list(PLANTED), 0].all()
    assert defense.report == {"removed_per_class": {"left": 6, "right": 6}}


def test_image_level_drops_images_with_a_flagged_segment(planted):
    data = planted(red=PLANTED)
    flags = registry.get("spectral").create({"level": "image", "removal_factor": "1"}).flag(data.new_model(), data)
    assert flags.level == "image" and flags.scores.shape == (40,)
    assert set(PLANTED) <= set(flags.flagged.nonzero().flatten().tolist())


@pytest.mark.parametrize("params", [{"poison_fraction": "0"}, {"poison_fraction": "0.9"}, {"level": "pixel"},
                                    {"min_samples": "1"}])
def test_bad_parameters(params):
    with pytest.raises(BenchmarkError):
        registry.get("spectral").create(params)
