"""Fixtures shared across test packages: one torch thread, and miniature dataset trees in the
official layouts.

The writers follow those of tests/benchmark/test_folder_datasets.py (which pins each layout's
label mapping); here they give end-to-end tests (the configs) a dataset folder to read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

HEIGHT, WIDTH = 30, 40  # odd, non-square sizes so resizing is exercised


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)


def write_mask(path: Path, left: int, right: int) -> None:
    """A mask whose left half is ``left`` and right half ``right`` (an object to attack)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.full((HEIGHT, WIDTH), left, dtype=np.uint8)
    values[:, WIDTH // 2:] = right
    Image.fromarray(values, mode="L").save(path)


def write_cityscapes(root: Path, n_train: int, n_val: int) -> None:
    """Raw label ids: road (7) with a car (26) on the right."""
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            stem = f"aachen_{i:06d}_000019"
            write_image(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", i)
            write_mask(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png", 7, 26)


def write_voc(root: Path, n_train: int, n_val: int) -> None:
    """Background (0) with a person (15) on the right."""
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"2007_{split}_{i:03d}" for i in range(n)]
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i, image_id in enumerate(ids):
            write_image(root / "JPEGImages" / f"{image_id}.jpg", i)
            write_mask(root / "SegmentationClass" / f"{image_id}.png", 0, 15)


def write_ade20k(root: Path, n_train: int, n_val: int) -> None:
    """Raw ids: road (7) with a car (21) on the right."""
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            stem = f"ADE_{split[:5]}_{i:08d}"
            write_image(root / "images" / split / f"{stem}.jpg", i)
            write_mask(root / "annotations" / split / f"{stem}.png", 7, 21)


@pytest.fixture
def official_layouts() -> dict[str, Callable[[Path, int, int], None]]:
    """Writers ``(root, n_train, n_test)`` of a miniature tree per dataset name."""
    return {"cityscapes": write_cityscapes, "voc": write_voc, "ade20k": write_ade20k}


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small tensors gain nothing from threads, and on a busy machine OpenMP's spinning
    threads make every forward many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
