"""The embedded synthetic street-scene dataset."""

import torch

from benchmark import datasets
from benchmark.datasets import DatasetConfig
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, PERSON, generate


def test_classes_and_shapes():
    assert len(CLASS_NAMES) >= 8
    for name in ("road", "sidewalk", "sky", "building", "vegetation", "car", "person"):
        assert name in CLASS_NAMES
    data = datasets.build(DatasetConfig(image_size=32, train_size=20, test_size=10))
    assert data.train.images.shape == (20, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.masks.shape == (10, 32, 32) and data.test.masks.dtype == torch.int64
    image, mask = data.train[0]
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1


def test_deterministic_from_seed_and_splits_differ():
    a, b = generate(16, 32, seed=3), generate(16, 32, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, generate(16, 32, seed=4).images)


def test_every_class_occurs_and_objects_vary():
    split = generate(200, 64, seed=0)
    counts = torch.bincount(split.masks.flatten(), minlength=len(CLASS_NAMES))
    assert bool((counts > 0).all())
    has_car = (split.masks == CAR).flatten(1).any(dim=1)
    assert 0.5 < has_car.float().mean() < 1.0
    car_sizes = (split.masks == CAR).flatten(1).sum(dim=1)[has_car]
    assert car_sizes.max() > 4 * car_sizes.min()  # cars come in different sizes
    assert (split.masks == PERSON).any()


def test_instance_ids_mark_cars_and_persons_only():
    split = generate(50, 64, seed=1)
    things = (split.masks == CAR) | (split.masks == PERSON)
    assert bool((split.instances[~things] == 0).all())
    assert bool((split.instances[things] > 0).all())
