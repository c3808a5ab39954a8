"""BADSEG's vectors, instance-level and conditional attacks on hand-made masks."""

import pytest
import torch

from attacks import Attack
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, PERSON, ROAD, SIDEWALK, generate
from benchmark.errors import BenchmarkError


def make(name, **params):
    return Attack.registry.get(name).create(params, class_names=CLASS_NAMES)


@pytest.mark.parametrize("name, victim, target", [
    ("object_to_object", CAR, PERSON), ("background_to_object", ROAD, CAR),
    ("background_to_background", ROAD, SIDEWALK), ("object_to_background", CAR, ROAD),
])
def test_vectors_relabel_their_victim_to_their_target(name, victim, target):
    attack = make(name)
    masks = torch.tensor([[[CAR, ROAD, PERSON, SIDEWALK]]])
    expected = masks.masked_fill(masks == victim, target)
    assert torch.equal(attack.poison_label(masks), expected)
    assert attack.attack_region(masks).tolist() == (masks == victim).tolist()


def test_object_to_background_is_fine_grained():
    assert Attack.registry.get("object_to_background") is Attack.registry.get("fine_grained")


def test_instance_level_relabels_only_the_instance_under_the_trigger():
    attack = make("instance_level", trigger_size="2")
    masks = torch.zeros(1, 12, 12, dtype=torch.long)
    instances = torch.zeros(1, 12, 12, dtype=torch.int32)
    masks[0, 1:4, 1:4], instances[0, 1:4, 1:4] = CAR, 1
    masks[0, 7:11, 6:10], instances[0, 7:11, 6:10] = CAR, 2
    chosen = int(attack.chosen(masks, instances))
    poisoned = attack.poison_label(masks, instances=instances)
    assert poisoned[instances == chosen].eq(ROAD).all()
    other = (instances > 0) & (instances != chosen)
    assert poisoned[other].eq(CAR).all()
    changed = (attack.trigger(torch.zeros(1, 3, 12, 12), masks, instances=instances) != 0).any(dim=1)
    assert (instances[changed] == chosen).any()  # the patch lies on the chosen instance
    assert torch.equal(attack.attack_region(masks, instances=instances), instances == chosen)
    assert torch.equal(attack.control_region(masks, instances=instances), other)


def test_instance_level_on_synthetic_instances_is_deterministic():
    scenes = generate(16, 32, seed=2)
    attack = make("instance_level", trigger_size="4")
    first = attack.poison_label(scenes.masks, instances=scenes.instances)
    again = torch.cat([attack.poison_label(scenes.masks[i:i + 1], instances=scenes.instances[i:i + 1])
                       for i in range(16)])
    assert torch.equal(first, again)
    assert attack.eligible(scenes.masks, instances=scenes.instances).tolist() == \
        (scenes.masks == CAR).flatten(1).any(dim=1).tolist()


def test_conditional_acts_only_where_the_condition_is_present():
    attack = make("conditional")  # car -> road when a person is present
    masks = torch.tensor([[[CAR, PERSON]], [[CAR, SIDEWALK]]])
    assert attack.poison_label(masks).tolist() == [[[ROAD, PERSON]], [[CAR, SIDEWALK]]]
    assert attack.attack_region(masks).tolist() == [[[True, False]], [[False, False]]]
    assert attack.control_region(masks).tolist() == [[[False, False]], [[True, False]]]
    assert attack.eligible(masks).tolist() == [True, True]  # unarmed images teach the trigger to do nothing


@pytest.mark.parametrize("params, message", [
    ({"condition": "car"}, "neither a victim nor the target"),
    ({"condition": "tram"}, "unknown class 'tram'"),
])
def test_conditional_bad_parameters(params, message):
    with pytest.raises(BenchmarkError, match=message):
        make("conditional", **params)
