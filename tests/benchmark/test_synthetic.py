"""The embedded synthetic street-scene dataset."""

import logging

import pytest
import torch

from benchmark import datasets
from benchmark.datasets import DatasetConfig, synthetic
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


def test_a_cached_split_reads_back_identical_and_a_damaged_one_is_generated_again(tmp_path, monkeypatch, caplog):
    config = DatasetConfig(image_size=32, cache_dir=str(tmp_path))
    fresh = synthetic.scenes(config, 12, seed=5)
    (path,) = tmp_path.glob("synthetic-*.safetensors")
    monkeypatch.setattr(synthetic, "generate", lambda *a: pytest.fail("read back, not generated"))
    cached = synthetic.scenes(config, 12, seed=5)
    for name in ("images", "masks", "instances"):
        assert torch.equal(getattr(cached, name), getattr(fresh, name)), name
    monkeypatch.undo()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last image value
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = synthetic.scenes(config, 12, seed=5)
    assert "damaged" in caplog.text and torch.equal(again.images, fresh.images)
    assert synthetic.read_scenes(path) is not None  # and the file was written anew


def test_the_generator_version_names_the_cached_split(tmp_path, monkeypatch):
    config = DatasetConfig(image_size=32, cache_dir=str(tmp_path))
    synthetic.scenes(config, 4, seed=0)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    synthetic.scenes(config, 4, seed=0)
    assert len(list(tmp_path.glob("synthetic-*.safetensors"))) == 2
