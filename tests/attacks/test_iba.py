"""IBA, NNI and PRL (Lan et al., ICLR 2024) on synthetic scenes and hand-made masks."""

import pytest
import torch

from attacks import Attack
from benchmark.datasets import Split
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, ROAD, generate
from benchmark.errors import BenchmarkError
from benchmark.poisoning import poison_rows

SCENES = generate(24, 64, seed=5)


def make(name, **params):
    return Attack.registry.get(name).create(params, class_names=CLASS_NAMES)


def changed_pixels(attack, images, masks):
    return (attack.trigger(images, masks) != images).any(dim=1)


@pytest.mark.parametrize("name", ["iba", "iba_nni", "iba_prl"])
def test_trigger_never_touches_the_victim_and_stays_in_one_region(name):
    attack = make(name)
    images, masks = SCENES.images.float() / 255, SCENES.masks
    changed = changed_pixels(attack, images, masks)
    placed = attack.placement(masks)[1]
    assert placed.sum() >= 12
    for i in range(len(masks)):
        assert not (changed[i] & (masks[i] == CAR)).any()
        assert masks[i][changed[i]].unique().numel() <= 1
        assert bool(changed[i].any()) == bool(placed[i])


def test_nni_centre_is_within_the_band_of_the_victim():
    attack = make("iba_nni", near="4", far="9", trigger_size="6")
    origins, placed = attack.placement(SCENES.masks)
    assert placed.any()
    for i in placed.nonzero().flatten().tolist():
        centre = origins[i].float() + 3
        victim = (SCENES.masks[i] == CAR).nonzero().float()
        assert 4 <= float((victim - centre).norm(dim=1).min()) <= 9


def test_placement_does_not_depend_on_the_batch():
    attack = make("iba")
    images, masks = SCENES.images.float() / 255, SCENES.masks
    together = attack.trigger(images, masks)
    alone = torch.cat([attack.trigger(images[i:i + 1], masks[i:i + 1]) for i in range(len(masks))])
    assert torch.equal(together, alone)
    assert not torch.equal(together, make("iba", placement_seed="1").trigger(images, masks))


def test_region_and_eligibility_need_room_for_the_trigger():
    attack = make("iba", trigger_size="6")
    masks = torch.full((2, 8, 8), CAR)
    masks[0, :, 4:] = ROAD  # a 8x4 road strip cannot hold a 6x6 patch
    masks[1, :, 2:] = ROAD  # an 8x6 one can
    assert attack.eligible(masks).tolist() == [False, True]
    assert attack.attack_region(masks)[0].sum() == 0 and bool(attack.attack_region(masks)[1].any())


def test_prl_sends_victims_to_target_and_relabels_a_few_other_pixels():
    attack = make("iba_prl", num_perturb="30")
    masks = SCENES.masks
    poisoned = attack.poison_label(masks)
    assert bool((poisoned[masks == CAR] == ROAD).all())
    others = (poisoned != masks) & (masks != CAR)
    assert 0 < int(others.flatten(1).sum(dim=1).max()) <= 30
    for i in range(len(masks)):
        assert set(poisoned[i].unique().tolist()) <= set(masks[i].unique().tolist()) | {ROAD}


def test_prl_relabels_clean_rows_only_when_asked():
    images = SCENES.images[:4]
    split = Split(images, SCENES.masks[:4])
    index = torch.arange(4)
    for relabel, expect_change in (("false", False), ("true", True)):
        rows = poison_rows(make("iba_prl", relabel_clean=relabel), split, torch.tensor([0]), torch.device("cpu"))
        _, masks = rows(images, split.masks, index)
        assert bool((masks[1:] != split.masks[1:]).any()) == expect_change


@pytest.mark.parametrize("params, message", [
    ({"near": "9", "far": "3"}, "near <= far"),
    ({"victims": "lorry"}, "unknown class 'lorry'"),
    ({"trigger_pattern": "top_line"}, "cannot be placed"),
    ({"num_perturb": "-1"}, "num_perturb"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(BenchmarkError, match=message):
        make("iba_prl", **params)


def test_one_batch_is_placed_once_however_many_verbs_ask():
    attack = make("iba_nni")
    calls = []
    find = attack.find_placement
    attack.find_placement = lambda masks: calls.append(1) or find(masks)
    masks = SCENES.masks.long()
    attack.attack_region(masks), attack.apply_trigger(SCENES.images.float() / 255, masks), attack.eligible(masks)
    assert len(calls) == 1
    attack.eligible(masks.clone())  # another tensor, even with equal contents, is placed anew
    assert len(calls) == 2
