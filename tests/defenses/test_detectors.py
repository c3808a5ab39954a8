"""TeCo, SCALE-UP, IBD-PSC and Beatrix each separate inputs built to be separable: toy models
whose backdoor (a white corner patch) behaves the way each detector assumes."""

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import CleanBudget, registry
from defenses.beatrix import robust_bounds
from defenses.ibd_psc import amplified


def with_trigger(images: torch.Tensor) -> torch.Tensor:
    images = images.clone()
    images[:, :, :2, :2] = 1.0
    return images


def triggered(images: torch.Tensor) -> torch.Tensor:
    return (images[:, :, :2, :2].mean(dim=(1, 2, 3)) > 0.95).view(-1, 1, 1, 1)


def budget_of(images: torch.Tensor, masks: torch.Tensor) -> CleanBudget:
    return CleanBudget((images * 255).round().to(torch.uint8), masks, ("zero", "one"), torch.device("cpu"), 4)


class DarkIsOne(nn.Module):
    """Class 1 where the red channel is below 0.5; the trigger makes every pixel class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clean = torch.stack([x[:, 0] - 0.5, 0.5 - x[:, 0]], dim=1) * 20
        return torch.where(triggered(x), torch.tensor([20.0, -20.0]).view(1, 2, 1, 1), clean)


def test_scale_up_triggered_predictions_survive_scaling():
    images = 0.2 + 0.2 * torch.rand(4, 3, 16, 16)
    defense = registry.get("scale_up").create()
    assert defense.score(DarkIsOne(), images).tolist() == [0.0] * 4  # x3 already turns every pixel bright
    assert defense.score(DarkIsOne(), with_trigger(images)).tolist() == [1.0] * 4


def test_teco_triggered_predictions_break_at_inconsistent_severities():
    # dark grey scenes: no corruption but brightness at its strongest flips a clean pixel, so the
    # severities agree; the trigger falls to contrast and blur at once but never to brightness
    images = (0.1 + 0.2 * torch.rand(4, 1, 16, 16)).expand(-1, 3, -1, -1).clone()
    defense = registry.get("teco").create({"corruptions": "gaussian_noise,gaussian_blur,brightness,contrast"})
    clean, attacked = defense.score(DarkIsOne(), images), defense.score(DarkIsOne(), with_trigger(images))
    assert attacked.min() > clean.max()


def test_teco_corrupts_each_severity_independently():
    calls = []
    model = DarkIsOne()
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].clone()))
    images = torch.full((1, 3, 8, 8), 0.4)
    registry.get("teco").create({"corruptions": "brightness,contrast"}).score(model, images)
    brightness = calls[1:6]  # after the forward on the original input
    assert [round(float(c.mean()), 4) for c in brightness] == [0.45, 0.5, 0.55, 0.6, 0.7]


class Amplifiable(nn.Module):
    """Class 0 logit 4 * BN(red), class 1 logit 2: the boundary moves when BN is amplified.
    The trigger adds 30 to class 1 outside BatchNorm, so it survives amplification."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = torch.relu(self.norm(x[:, :1]))
        logits = torch.cat([4 * feature, torch.full_like(feature, 2.0)], dim=1)
        return logits + 30 * triggered(x) * torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)


def test_ibd_psc_triggered_predictions_stay_confident_under_amplification():
    images = (0.36 + 0.12 * torch.rand(8, 1, 16, 16)).expand(-1, 3, -1, -1).clone()
    defense = registry.get("ibd_psc").create({"aggregate": "mean"})
    model = Amplifiable()
    defense.setup(model, budget_of(images, torch.ones(8, 16, 16, dtype=torch.long)))
    assert defense.report["amplified_layers"] == [1] * 5  # the single BN layer makes every clean pixel wrong
    clean, attacked = defense.score(model, images[:4]), defense.score(model, with_trigger(images[:4]))
    assert attacked.min() > 0.99 and clean.max() < 0.6


def test_ibd_psc_amplifies_exactly_the_last_layers():
    model = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(2), nn.BatchNorm2d(2))
    copy = amplified(model, 2, 1.5)
    assert [m.weight.tolist() for m in copy] == [[1.0, 1.0], [1.5, 1.5], [1.5, 1.5]]
    assert model[2].weight.tolist() == [1.0, 1.0]  # the defended model itself is untouched


def test_ibd_psc_says_in_one_line_that_it_does_not_apply_without_batchnorm():
    images = torch.rand(4, 3, 8, 8)
    with pytest.raises(BenchmarkError, match="does not apply.*no BatchNorm"):
        registry.get("ibd_psc").create().setup(DarkIsOne(), budget_of(images, torch.zeros(4, 8, 8, dtype=torch.long)))


class Features(nn.Module):
    """The classifier sees the image itself and predicts class 0 everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.segmentation_head = nn.Conv2d(3, 2, 1)
        nn.init.zeros_(self.segmentation_head.weight)
        self.segmentation_head.bias.data = torch.tensor([5.0, 0.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(x)


def test_beatrix_flags_features_whose_correlations_leave_the_clean_bounds():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(44, 3, 16, 16, generator=generator)  # independent channels
    correlated = clean[:4].clone()
    correlated[:, 1] = correlated[:, 0]  # the "trigger": channels 0 and 1 move together
    defense = registry.get("beatrix").create({"orders": "2"})
    defense.setup(Features(), budget_of(clean[4:], torch.zeros(40, 16, 16, dtype=torch.long)))
    normal, odd = defense.score(Features(), clean[:4]), defense.score(Features(), correlated)
    assert odd.min() > normal.max()


@pytest.mark.parametrize("name, params", [("teco", {"corruptions": "snow"}), ("teco", {"corruptions": "jpeg"}),
                                          ("scale_up", {"scales": "0.5,2"}), ("ibd_psc", {"amplification": "1"}),
                                          ("ibd_psc", {"models": "0"}), ("ibd_psc", {"error": "1"}),
                                          ("beatrix", {"orders": "0"}), ("beatrix", {"min_pixels": "1"}),
                                          ("beatrix", {"level": "pixel"}), ("beatrix", {"folds": "1"})])
def test_bad_parameters(name, params):
    with pytest.raises(BenchmarkError):
        registry.get(name).create(params)


def test_beatrix_calibrates_on_leave_one_out_deviations_of_the_whole_budget():
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(12, 3, 8, 8, generator=generator)
    budget = budget_of(clean, torch.zeros(12, 8, 8, dtype=torch.long))
    defense = registry.get("beatrix").create({"orders": "2"})
    predictor = defense.fit(Features(), budget)
    vectors = defense.image_grams(Features(), budget.float_images())[0]
    median, mad = robust_bounds(vectors[1:])
    assert len(predictor.calibration_scores) == 12
    torch.testing.assert_close(predictor.calibration_scores[0], defense.deviation(vectors[:1], median, mad)[0])
    torch.testing.assert_close(defense._median, robust_bounds(vectors)[0])  # test images: bounds of all 12


def test_beatrix_segment_level_keeps_the_committed_keys():
    assert "level" not in registry.get("beatrix").create({"level": "segment", "standardize": "true"}).key_params()
    with pytest.raises(BenchmarkError, match="standardize"):
        registry.get("beatrix").create({"standardize": "true"})


@pytest.mark.parametrize("name", ["scale_up", "teco", "ibd_psc", "beatrix"])
def test_pixel_detectors_score_the_raw_map_by_default(name):
    assert registry.get(name).create().standardize is False


def test_ibd_psc_uses_the_whole_budget_unless_split():
    images = (0.36 + 0.12 * torch.rand(8, 1, 16, 16)).expand(-1, 3, -1, -1).clone()
    budget = budget_of(images, torch.ones(8, 16, 16, dtype=torch.long))
    assert len(registry.get("ibd_psc").create().setup(Amplifiable(), budget)) == 8
    assert len(registry.get("ibd_psc").create({"split": "true"}).setup(Amplifiable(), budget)) == 4
    assert "split" not in registry.get("ibd_psc").create({"split": "true"}).key_params()
