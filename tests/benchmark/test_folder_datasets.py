"""The four folder datasets, built from tiny fake layouts written with PIL."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import datasets
from benchmark.datasets import DatasetConfig
from benchmark.errors import BenchmarkError

SIZE = 32
W, H = 40, 30  # odd, non-square sizes so resizing is exercised


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _mask(path: Path, value: int, palette: bool = False) -> None:
    """A constant label mask (constant, so nearest resizing leaves the value exact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.fromarray(np.full((H, W), value, dtype=np.uint8), mode="L")
    if palette:
        mask = mask.convert("P")  # indices equal to the grey values; then give a colour palette
        mask.putpalette([c for i in range(256) for c in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    mask.save(path)


def _build(name: str, root: Path, **kwargs: object) -> datasets.SegmentationDataset:
    config = DatasetConfig(name=name, root=str(root), image_size=SIZE, **kwargs)  # type: ignore[arg-type]
    return datasets.build(config)


def _check_shapes(dataset: datasets.SegmentationDataset, n_train: int, n_test: int) -> None:
    assert dataset.train.images.shape == (n_train, 3, SIZE, SIZE)
    assert dataset.test.images.shape == (n_test, 3, SIZE, SIZE)
    assert dataset.train.masks.shape == (n_train, SIZE, SIZE)
    assert dataset.train.images.dtype == torch.uint8
    assert dataset.train.masks.dtype == torch.int64


# --- fake layouts --------------------------------------------------------------------------


def make_folder(root: Path, train: list[int], test: list[int]) -> None:
    (root / "classes.txt").write_text("sky\ngrass\ncar\n")
    for split, labels in (("train", train), ("test", test)):
        for i, label in enumerate(labels):
            suffix = ".jpg" if i % 2 else ".png"
            _image(root / "images" / split / f"img{i}{suffix}", i)
            _mask(root / "masks" / split / f"img{i}.png", label)


def make_cityscapes(root: Path, train: list[int], val: list[int]) -> None:
    for split, ids in (("train", train), ("val", val)):
        for i, raw in enumerate(ids):
            city = "aachen" if i % 2 == 0 else "bremen"
            stem = f"{city}_{i:06d}_000019"
            _image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", i)
            _mask(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)


def make_ade20k(root: Path, train: list[int], val: list[int]) -> None:
    for split, raws in (("training", train), ("validation", val)):
        for i, raw in enumerate(raws):
            stem = f"ADE_{split[:5]}_{i:08d}"
            _image(root / "images" / split / f"{stem}.jpg", i)
            _mask(root / "annotations" / split / f"{stem}.png", raw)


def make_voc(root: Path, train: list[int], val: list[int]) -> None:
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, labels in (("train", train), ("val", val)):
        ids = [f"2007_{split}_{i:03d}" for i in range(len(labels))]
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i, (image_id, label) in enumerate(zip(ids, labels)):
            _image(root / "JPEGImages" / f"{image_id}.jpg", i)
            _mask(root / "SegmentationClass" / f"{image_id}.png", label, palette=True)


def _labels(split: datasets.Split) -> list[int]:
    """The (constant) label of each mask, checking each mask is constant."""
    flat = split.masks.flatten(1)
    assert (flat == flat[:, :1]).all()
    return flat[:, 0].tolist()


# --- happy paths ---------------------------------------------------------------------------


def test_folder(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0, 1, 255], test=[2, 1])
    dataset = _build("folder", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.class_names == ("sky", "grass", "car")
    assert _labels(dataset.train) == [0, 1, 255]
    assert _labels(dataset.test) == [2, 1]


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7, 26, 0], val=[33, 9])
    dataset = _build("cityscapes", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 19
    # sorted by path: aachen (i=0, 2) before bremen (i=1)
    assert _labels(dataset.train) == [0, 255, 13]
    assert _labels(dataset.test) == [18, 255]  # aachen raw 33 = bicycle, bremen raw 9 = parking
    assert dataset.class_names[0] == "road" and dataset.class_names[13] == "car"


def test_ade20k_shifts_labels(tmp_path: Path) -> None:
    make_ade20k(tmp_path, train=[0, 1, 150], val=[12, 0])
    dataset = _build("ade20k", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 150
    assert dataset.class_names[0] == "wall" and dataset.class_names[-1] == "flag"
    assert _labels(dataset.train) == [255, 0, 149]
    assert _labels(dataset.test) == [11, 255]


def test_voc_keeps_palette_indices(tmp_path: Path) -> None:
    make_voc(tmp_path, train=[0, 15, 255], val=[20, 7])
    with Image.open(next((tmp_path / "SegmentationClass").glob("*.png"))) as mask:
        assert mask.mode == "P"
    dataset = _build("voc", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 21 and dataset.class_names[15] == "person"
    assert _labels(dataset.train) == [0, 15, 255]
    assert _labels(dataset.test) == [20, 7]


def test_sizes_cap_in_sorted_order(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0, 1, 2], test=[2, 1])
    dataset = _build("folder", tmp_path, train_size=2, test_size=1)
    _check_shapes(dataset, 2, 1)
    assert _labels(dataset.train) == [0, 1]
    assert _labels(dataset.test) == [2]
    with pytest.raises(BenchmarkError, match="train_size must be at least 1"):
        _build("folder", tmp_path, train_size=0)


def test_images_are_resized_bilinear(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0], test=[0])
    dataset = _build("folder", tmp_path)
    with Image.open(tmp_path / "images" / "train" / "img0.png") as image:
        expected = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    assert torch.equal(dataset.train.images[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()))


# --- broken layouts ------------------------------------------------------------------------


def _error(name: str, root: Path, *parts: str) -> str:
    """Build, expect a one-line BenchmarkError containing every part (plain substrings)."""
    with pytest.raises(BenchmarkError) as error:
        _build(name, root)
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


@pytest.mark.parametrize("name", ["folder", "cityscapes", "ade20k", "voc"])
def test_root_required(name: str) -> None:
    with pytest.raises(BenchmarkError, match=f"^dataset '{name}' needs --data-root DIR$"):
        datasets.build(DatasetConfig(name=name, image_size=SIZE))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("folder", "folder: expected ROOT/classes.txt (one class name per line); not found under"),
        ("cityscapes", "cityscapes: expected ROOT/leftImg8bit/train/<city>/*_leftImg8bit.png; found no such files"),
        ("ade20k", "ade20k: expected ROOT/images/training/*.jpg; found no such files under"),
        ("voc", "voc: expected ROOT/ImageSets/Segmentation/train.txt (one image id per line); not found under"),
    ],
)
def test_empty_root(tmp_path: Path, name: str, expected: str) -> None:
    _error(name, tmp_path, expected, str(tmp_path))


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "images" / "train").mkdir(parents=True)
    _error("folder", tmp_path, "folder: expected ROOT/images/train/*.png|jpg|jpeg; found no such files under")


@pytest.mark.parametrize(
    "name, make, missing, expected",
    [
        ("folder", make_folder, "masks/train/img1.png", "has no mask; expected ROOT/masks/train/<stem>.png"),
        ("cityscapes", make_cityscapes, "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png",
         "has no mask; expected ROOT/gtFine/val/<city>/<x>_gtFine_labelIds.png"),
        ("ade20k", make_ade20k, "annotations/training/ADE_train_00000002.png",
         "has no mask; expected ROOT/annotations/training/<stem>.png"),
        ("voc", make_voc, "SegmentationClass/2007_train_001.png",
         "has no mask; expected ROOT/SegmentationClass/<id>.png"),
    ],
)  # fmt: skip
def test_image_without_mask(
    tmp_path: Path, name: str, make: Callable[[Path, list[int], list[int]], None], missing: str, expected: str
) -> None:
    make(tmp_path, [1, 1, 1], [1, 1])
    (tmp_path / missing).unlink()
    _error(name, tmp_path, f"{name}: image ", expected, str(tmp_path / missing))


def test_cityscapes_missing_val_split(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7], val=[7])
    shutil.rmtree(tmp_path / "leftImg8bit" / "val")
    _error("cityscapes", tmp_path, "cityscapes: expected ROOT/leftImg8bit/val/<city>/*_leftImg8bit.png")


def test_voc_listed_image_missing(tmp_path: Path) -> None:
    make_voc(tmp_path, train=[1, 2], val=[3])
    (tmp_path / "JPEGImages" / "2007_train_000.jpg").unlink()
    _error("voc", tmp_path, "train.txt lists '2007_train_000', but ROOT/JPEGImages/<id>.jpg")


def test_folder_label_out_of_range(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0, 3], test=[1])  # classes.txt has 3 classes: label 3 is invalid
    _error("folder", tmp_path, "img1.png holds label 3, but the dataset has 3 classes")


def test_rgb_mask_rejected(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0], test=[1])
    Image.new("RGB", (W, H)).save(tmp_path / "masks" / "train" / "img0.png")
    _error("folder", tmp_path, "has mode RGB; expected a single-channel label PNG")
