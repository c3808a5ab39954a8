"""FST: the classifier is re-initialised, kept at its original norm, and pushed away from the
compromised weights more the larger alpha is."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import registry


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.segmentation_head = nn.Sequential(nn.Conv2d(8, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.features(x))


@pytest.mark.parametrize("alpha", [0.0, 5.0])
def test_classifier_keeps_its_norm(make_budget, alpha: float) -> None:
    model = Small()
    original = model.segmentation_head[0].weight.detach().clone()
    defense = registry.get("fst").create({"epochs": 2, "alpha": alpha, "lr": 0.01})
    head = defense.fit(model, make_budget(n=4, size=8)).model.segmentation_head[0].weight
    torch.testing.assert_close(head.norm(), original.norm())
    assert torch.equal(model.segmentation_head[0].weight, original)  # the input model is untouched
    assert defense.report["layer"] == "segmentation_head.0"


def test_alpha_pushes_the_classifier_away_from_the_original(make_budget) -> None:
    cosines = []
    for alpha in (0.0, 5.0):
        defense = registry.get("fst").create({"epochs": 2, "alpha": alpha, "lr": 0.01})
        defense.fit(Small(), make_budget(n=4, size=8))
        cosines.append(defense.report["classifier_cosine_to_original"])
    assert cosines[1] < cosines[0] and cosines[1] < 0


@pytest.mark.parametrize("params", [{"alpha": "-1"}, {"epochs": "0"}, {"lr": "-1"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("fst").create(params)
