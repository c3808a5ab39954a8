"""The shared tuning loop of the repair defenses: per-pixel CE with the ignore index, BatchNorm
statistics frozen while the weights learn; plain fine-tuning leaves its input model alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from defenses import registry
from defenses.repair import pixel_ce_of, require_encoder_batchnorm, shuffled_batches, tune


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def test_ignore_index_pixels_do_not_count() -> None:
    logits = torch.randn(1, 4, 2, 2)
    masks = torch.tensor([[[0, 1], [255, 255]]])
    torch.testing.assert_close(pixel_ce_of(logits, masks),
                               pixel_ce_of(logits[..., :1, :], masks[..., :1, :]))


def test_tune_learns_weights_with_batchnorm_statistics_frozen(make_budget) -> None:
    model = small_model()
    statistics = (model[1].running_mean.clone(), model[1].running_var.clone())
    weight = model[0].weight.detach().clone()
    tune(model, make_budget(n=6, size=8), epochs=2, lr=1e-2)
    assert torch.equal(model[1].running_mean, statistics[0]) and torch.equal(model[1].running_var, statistics[1])
    assert not torch.equal(model[0].weight, weight) and not model.training


def test_flipped_batches_mirror_images_and_masks_together(make_budget) -> None:
    budget = make_budget(n=64, size=8, batch_size=64)
    plain = next(shuffled_batches(budget, torch.Generator().manual_seed(0)))
    images, masks = next(shuffled_batches(budget, torch.Generator().manual_seed(0), flip=True))
    mirrored = [i for i in range(64) if not torch.equal(masks[i], plain[1][i])]
    assert 16 < len(mirrored) < 48  # about half, drawn per image
    for i in range(64):
        expected = (plain[0][i].flip(-1), plain[1][i].flip(-1)) if i in mirrored else (plain[0][i], plain[1][i])
        assert torch.equal(images[i], expected[0]) and torch.equal(masks[i], expected[1])


def test_finetune_changes_a_copy(make_budget) -> None:
    model = small_model()
    state = copy.deepcopy(model.state_dict())
    defense = registry.get("finetune").create({"epochs": 1})
    repaired = defense.fit(model, make_budget(n=4, size=8)).model
    assert repaired is not model and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert set(defense.report) == {"budget_miou_before", "budget_miou_after", "final_loss"}


def test_batchnorm_repairs_refuse_a_model_without_it() -> None:
    class LayerNormNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(1, 4))
            self.decoder = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))

    with pytest.raises(BenchmarkError, match="anp: the model's encoder has no BatchNorm"):
        require_encoder_batchnorm(LayerNormNet(), "anp", "adversarial neuron pruning")
    require_encoder_batchnorm(small_model(), "anp", "adversarial neuron pruning")


@pytest.mark.parametrize("params", [{"epochs": "0"}, {"lr": "0"}])
def test_finetune_bad_parameters(params: dict) -> None:
    with pytest.raises(BenchmarkError):
        registry.get("finetune").create(params)
