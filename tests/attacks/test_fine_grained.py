"""Poisoning invariants of the fine-grained attack (Li et al. 2021)."""

import pytest
import torch

from attacks import Attack
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, PERSON, ROAD
from benchmark.errors import BenchmarkError
from benchmark.poisoning import poison_rows, select_poison
from benchmark.datasets import Split


def make(**params):
    return Attack.registry.get("fine_grained").create(params, class_names=CLASS_NAMES)


def test_only_victim_pixels_become_target():
    attack = make()
    masks = torch.tensor([[[CAR, PERSON], [255, CAR]]])
    assert attack.poison_label(masks).tolist() == [[[ROAD, PERSON], [255, ROAD]]]


def test_region_is_victims_and_eligibility_needs_a_victim():
    attack = make(victims="car,person")
    masks = torch.tensor([[[CAR, 0], [PERSON, 1]], [[0, 0], [1, 1]]])
    assert attack.attack_region(masks).tolist() == [[[True, False], [True, False]], [[False, False], [False, False]]]
    assert attack.eligible(masks).tolist() == [True, False]


def test_target_is_an_index_and_params_report_names():
    attack = make(target="sidewalk")
    assert attack.target == 1
    assert attack.params()["target"] == "sidewalk"
    assert make(target="0").target == 0


@pytest.mark.parametrize("params, message", [
    ({"victims": "road"}, "cannot also be a victim"),
    ({"victims": "bus"}, "unknown class 'bus'"),
    ({"poison_rate": "1.5"}, "poison_rate"),
    ({"trigger_position": "left"}, "trigger_position"),
    ({"victim": "car"}, "did you mean victims"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(BenchmarkError, match=message):
        make(**params)


def test_poisoning_selects_rate_of_whole_set_among_eligible():
    attack = make(poison_rate="0.25")
    masks = torch.zeros(8, 4, 4, dtype=torch.long)
    masks[:4, 0, 0] = CAR  # only the first four contain a car
    chosen = select_poison(attack, masks, seed=0)
    assert len(chosen) == 2 and bool((chosen < 4).all())
    assert torch.equal(chosen, select_poison(attack, masks, seed=0))


def test_poisoned_rows_change_only_chosen_images():
    attack = make(trigger_size="2")
    images = torch.full((3, 3, 8, 8), 100, dtype=torch.uint8)
    masks = torch.full((3, 8, 8), CAR, dtype=torch.long)
    rows = poison_rows(attack, Split(images, masks), torch.tensor([1]), torch.device("cpu"))
    index = torch.tensor([2, 1, 0])  # a shuffled batch: the swap follows the rows, not positions
    poisoned_images, poisoned_masks = rows(images[index], masks[index], index)
    poisoned_images, poisoned_masks = poisoned_images[[2, 1, 0]], poisoned_masks[[2, 1, 0]]
    assert torch.equal(poisoned_images[[0, 2]], images[[0, 2]]) and torch.equal(poisoned_masks[[0, 2]], masks[[0, 2]])
    assert not torch.equal(poisoned_images[1], images[1])
    assert bool((poisoned_masks[1] == ROAD).all())
    assert torch.equal(images, torch.full((3, 3, 8, 8), 100, dtype=torch.uint8))  # source untouched
