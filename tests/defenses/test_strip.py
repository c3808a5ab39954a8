"""STRIP: a continuous score, higher for input-independent confident models, computed in
batched forwards, with a threshold set on the clean budget only (each budget image blended
with the half of the budget it is not in)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.base import rank_threshold


class Constant(nn.Module):
    """Peaked logits that ignore the input: what a trigger does to a backdoored model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([20.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)
        return logits.expand(x.shape[0], 4, *x.shape[-2:]) + 0 * x[:, :1]


def _conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 3, padding=1)


def _calls(model: nn.Module) -> list[int]:
    """Batch sizes of the model's forwards."""
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes


@pytest.mark.parametrize("variant", ["global", "local"])
def test_scores_rank_confident_input_independent_models_higher(variant: str, make_budget) -> None:
    strip = registry.get("strip").create({"n": 4, "variant": variant})
    strip.setup(None, make_budget(n=8, size=32))
    images = torch.rand(6, 3, 32, 32)
    constant, random = strip.score(Constant(), images), strip.score(_conv(), images)
    assert constant.shape == random.shape == (6,)
    assert constant.max() <= 0 and constant.min() > -1e-6
    assert random.max() < -0.1 and random.min() > -math.log(4)
    assert len(set(random.tolist())) == 6  # continuous: every image its own score


def test_local_scores_the_low_entropy_quantile(make_budget) -> None:
    budget = make_budget(n=8, size=32)
    low, mean = (registry.get("strip").create({"n": 4, "variant": v, "quantile": 0.05}) for v in ("local", "global"))
    low.setup(None, budget)
    mean.setup(None, budget)
    images = torch.rand(3, 3, 32, 32)
    assert (low.score(_conv(), images) > mean.score(_conv(), images)).all()


@pytest.mark.parametrize("batch, n, chunk", [(6, 4, 8), (5, 3, 512), (2, 8, 3)])
def test_blends_go_through_the_model_in_chunks(batch: int, n: int, chunk: int, make_budget) -> None:
    budget, images, model = make_budget(n=4, size=32), torch.rand(batch, 3, 32, 32), _conv()
    chunked, whole = (registry.get("strip").create({"n": n, "chunk": c}) for c in (chunk, 10_000))
    chunked.setup(None, budget)
    whole.setup(None, budget)
    sizes = _calls(model)
    scores = chunked.score(model, images)
    assert len(sizes) == math.ceil(batch * n / chunk) and sum(sizes) == batch * n
    torch.testing.assert_close(scores, whole.score(model, images))


def test_overlays_come_from_the_first_half_of_the_budget_cycled(make_budget) -> None:
    budget = make_budget(n=6, size=32)
    strip = registry.get("strip").create({"n": 5})
    calibration = strip.setup(None, budget)
    pool, rest = budget.split(0.5)
    assert torch.equal(calibration.images, budget.images)
    assert torch.equal(strip._overlays, pool.float_images()[[0, 1, 2, 0, 1]])


def test_threshold_comes_from_the_budget_only_and_no_image_is_blended_with_itself(make_budget) -> None:
    budget = make_budget(n=8, size=32)
    strip = registry.get("strip").create({"n": 4, "fpr": 0.25})
    model = _conv()
    predictor = strip.fit(model, budget)
    pool, rest = budget.split(0.5)
    expected = torch.cat([strip.entropy_score(model, pool.float_images(), rest.float_images()),
                          strip.score(model, rest.float_images())])
    torch.testing.assert_close(predictor.calibration_scores, expected)
    assert predictor.threshold == rank_threshold(predictor.calibration_scores, 0.25)
    labels, rejected, scores = predictor.predict_scored(torch.rand(3, 3, 32, 32))
    assert labels.shape == (3, 32, 32) and torch.equal(rejected, scores > predictor.threshold)


def test_tiny_budget_is_a_clear_error(make_budget) -> None:
    with pytest.raises(BenchmarkError, match="at least 2"):
        registry.get("strip").create().setup(None, make_budget(n=1, size=32))


@pytest.mark.parametrize("params", [{"n": "0"}, {"alpha": "0"}, {"alpha": "1"}, {"variant": "pixel"},
                                    {"quantile": "1.5"}, {"chunk": "-1"}, {"fpr": "0"}, {"n": "many"}, {"blend": "max"},
                                    {"direction": "high"}])
def test_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("strip").create(params)


class Recorder(nn.Module):
    """Records the blended inputs and predicts from them like a random conv."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []
        self.conv = _conv()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return self.conv(x)


@pytest.mark.parametrize("blend", ["add", "centred", "sum", "convex"])
def test_blend_is_the_papers_sum_the_clipped_sum_or_the_convex_mix(blend: str, make_budget) -> None:
    strip = registry.get("strip").create({"n": 2, "blend": blend, "chunk": 1000})
    strip.setup(None, make_budget(n=4, size=8))
    images, model = torch.rand(1, 3, 8, 8), Recorder()
    strip.score(model, images)
    (mixed,) = model.inputs
    overlay = strip._overlays[0]
    mean = strip._pixel_mean[0]
    expected = {"add": images[0] + overlay, "centred": images[0] + overlay - mean, "sum": (images[0] + overlay).clamp(max=1),
                "convex": 0.5 * images[0] + 0.5 * overlay}[blend]
    torch.testing.assert_close(mixed[0], expected)
    assert blend != "add" or mixed.max() > 1  # the paper's float sum does not saturate


def test_default_blend_is_the_unclipped_sum_and_old_blends_keep_their_keys() -> None:
    assert registry.get("strip").create().blend == "add"
    assert registry.get("strip").create().key_params()["blend"] == "add"
    assert registry.get("strip").create({"blend": "sum"}).key_params()["blend"] == "sum"
    assert "blend" not in registry.get("strip").create({"blend": "convex"}).key_params()


def test_both_directions_score_the_distance_from_the_clean_median(make_budget) -> None:
    budget, model = make_budget(n=8, size=16), _conv()
    low = registry.get("strip").create({"n": 4})
    both = registry.get("strip").create({"n": 4, "direction": "both"})
    low.setup(model, budget)
    both.setup(model, budget)
    median = low.calibration_scores(model, budget).median()
    images = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(both.score(model, images), (low.score(model, images) - median).abs())


def test_split_calibrates_on_the_second_half_only_and_keeps_the_committed_keys(make_budget) -> None:
    budget, model = make_budget(n=8, size=16), _conv()
    strip = registry.get("strip").create({"n": 4, "split": "true"})
    calibration = strip.setup(model, budget)
    assert torch.equal(calibration.images, budget.split(0.5)[1].images)
    torch.testing.assert_close(strip.calibration_scores(model, calibration), strip.score(model, calibration.float_images()))
    assert "split" not in strip.key_params()
