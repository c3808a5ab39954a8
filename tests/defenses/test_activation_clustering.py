"""Activation clustering: 2-means splits off a planted small cluster and flags it; a class that
splits in two large halves is left alone (relative size analysis)."""

import pytest

from benchmark.errors import BenchmarkError
from defenses import registry

PLANTED = (2, 9, 14, 21, 33, 38)


def test_flags_the_small_planted_cluster_and_not_a_balanced_split(planted):
    data = planted(red=PLANTED, blue=tuple(range(0, 40, 2)))
    defense = registry.get("activation_clustering").create()
    flags = defense.flag(data.new_model(), data)
    assert set(flags.flagged[:, 0].nonzero().flatten().tolist()) == set(PLANTED)
    assert not flags.flagged[:, 1].any()
    report = defense.report["classes"]
    assert report["left"]["smaller_share"] == pytest.approx(6 / 40) and report["left"]["flagged"]
    assert report["right"]["smaller_share"] == pytest.approx(0.5) and not report["right"]["flagged"]
    assert set(flags.scores[:, 0].topk(6).indices.tolist()) == set(PLANTED)


@pytest.mark.parametrize("params", [{"dims": "0"}, {"size_threshold": "0.5"}, {"level": "x"}, {"min_samples": "3"}])
def test_bad_parameters(params):
    with pytest.raises(BenchmarkError):
        registry.get("activation_clustering").create(params)
