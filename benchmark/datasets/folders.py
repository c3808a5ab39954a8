"""Datasets read from a local folder (``--data-root DIR``); nothing is ever downloaded.

Each builder lists (image, mask) pairs for its layout and hands them to one shared loader,
which resizes images to ``image_size`` x ``image_size`` (bilinear) and masks likewise
(nearest, so labels are never blended), maps raw mask values to train labels and stacks
the split into tensors. Files are taken in sorted order; ``train_size`` / ``test_size`` keep
the first N. A broken layout raises :class:`BenchmarkError` naming the expected layout.

Layouts (``ROOT`` is ``config.root``):

``folder``
    ``ROOT/classes.txt`` (one class name per line; label k is line k),
    ``ROOT/images/{train,test}/<stem>.png|jpg|jpeg`` and
    ``ROOT/masks/{train,test}/<stem>.png`` (single-channel, value = class index, 255 = ignore).

``cityscapes``
    ``ROOT/leftImg8bit/{train,val}/<city>/<x>_leftImg8bit.png`` and
    ``ROOT/gtFine/{train,val}/<city>/<x>_gtFine_labelIds.png``. The 34 raw label ids are
    mapped to the 19 standard train ids (all others -> 255). The test split is ``val``.

``ade20k``
    ADEChallengeData2016 (SceneParsing, 150 classes): ``ROOT/images/{training,validation}/
    <x>.jpg`` and ``ROOT/annotations/{training,validation}/<x>.png``. Raw 0 ("other") -> 255,
    raw k -> k - 1. Class names are the standard 150 short names (as in mmsegmentation),
    hard-coded so that they do not depend on ``objectInfo150.csv`` being present.

``voc``
    Pascal VOC 2012: ``ROOT/JPEGImages/<id>.jpg``, ``ROOT/SegmentationClass/<id>.png``
    (palette PNGs whose palette indices are the labels, 255 = ignore/boundary) and the
    split lists ``ROOT/ImageSets/Segmentation/{train,val}.txt``. The test split is ``val``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from benchmark.datasets import IGNORE_INDEX, DatasetConfig, SegmentationDataset, Split, register
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)

Pair = tuple[Path, Path]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MASK_MODES = ("L", "P", "I", "I;16")

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
# Raw Cityscapes label id -> train id, from cityscapesscripts' labels.py; ids not listed -> 255.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
    "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
    "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
    "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
    "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt",
    "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan",
    "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)  # fmt: skip

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _lookup_table(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """Raw value -> label as an array, so remapping a mask is one indexing op."""
    table = np.full(size, IGNORE_INDEX, dtype=np.int64)
    for raw, label in mapping.items():
        table[raw] = label
    return table


_CITYSCAPES_LUT = _lookup_table(CITYSCAPES_TRAIN_IDS)
_ADE20K_LUT = _lookup_table({k: k - 1 for k in range(1, len(ADE20K_CLASSES) + 1)})


def _root(config: DatasetConfig) -> Path:
    """The dataset folder; these datasets cannot be built without one (``datasets.build``
    has already checked that a given folder exists)."""
    if config.root is None:
        raise BenchmarkError(f"dataset {config.name!r} needs --data-root DIR")
    return Path(config.root)


def _pair_up(
    name: str,
    root: Path,
    images: Sequence[Path],
    mask_of: Callable[[Path], Path],
    image_layout: str,
    mask_layout: str,
) -> list[Pair]:
    """Match every image to its mask up front, so a broken layout fails before any loading."""
    if not images:
        raise BenchmarkError(f"{name}: expected ROOT/{image_layout}; found no such files under {root}")
    pairs = []
    for image in sorted(images):
        mask = mask_of(image)
        if not mask.is_file():
            raise BenchmarkError(
                f"{name}: image {image} has no mask; expected ROOT/{mask_layout}, i.e. {mask}"
            )
        pairs.append((image, mask))
    return pairs


def _cap(pairs: list[Pair], limit: int | None, which: str) -> list[Pair]:
    """Keep the first ``limit`` pairs (sorted order), so a capped run is reproducible."""
    if limit is None:
        return pairs
    if limit < 1:
        raise BenchmarkError(f"{which} must be at least 1 (or unset for all images), got {limit}")
    return pairs[:limit]


def _read_image(path: Path, size: int) -> np.ndarray:
    """``uint8 [3,size,size]``; any PIL mode (grey, RGBA, CMYK jpg) is converted to RGB."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except OSError as error:
        raise BenchmarkError(f"cannot read image {path}: {error}") from error
    return np.array(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _read_mask(name: str, path: Path, size: int) -> np.ndarray:
    """Raw mask values; palette ('P') masks keep their indices (never converted to RGB)."""
    try:
        with Image.open(path) as mask:
            if mask.mode not in _MASK_MODES:
                raise BenchmarkError(
                    f"{name}: mask {path} has mode {mask.mode}; expected a single-channel "
                    f"label PNG (mode L or P, value = label)"
                )
            if mask.mode == "I;16":
                mask = mask.convert("I")
            resized = mask.resize((size, size), Image.Resampling.NEAREST)
    except OSError as error:
        raise BenchmarkError(f"cannot read mask {path}: {error}") from error
    return np.asarray(resized).astype(np.int64)


def _load_split(
    name: str, split: str, pairs: Sequence[Pair], size: int, num_classes: int, lut: np.ndarray | None
) -> Split:
    """Read, resize, remap and stack one split; the one loader all folder datasets share."""
    images = torch.empty((len(pairs), 3, size, size), dtype=torch.uint8)
    masks = torch.empty((len(pairs), size, size), dtype=torch.int64)
    for i, (image_path, mask_path) in enumerate(tqdm(pairs, desc=f"{name} {split}", unit="img", leave=False)):
        images[i] = torch.from_numpy(_read_image(image_path, size))
        raw = _read_mask(name, mask_path, size)
        if lut is not None:  # values beyond the table are unlabelled too
            raw = np.where((raw >= 0) & (raw < len(lut)), lut[np.clip(raw, 0, len(lut) - 1)], IGNORE_INDEX)
        bad = (raw != IGNORE_INDEX) & ((raw < 0) | (raw >= num_classes))
        if bad.any():
            raise BenchmarkError(
                f"{name}: mask {mask_path} holds label {int(raw[bad][0])}, but the dataset has "
                f"{num_classes} classes (labels 0..{num_classes - 1}, {IGNORE_INDEX} = ignore)"
            )
        masks[i] = torch.from_numpy(raw)
    log.info("%s %s: loaded %d images at %dx%d", name, split, len(pairs), size, size)
    return Split(images, masks)


def _build(
    config: DatasetConfig,
    class_names: Sequence[str],
    list_pairs: Callable[[str], list[Pair]],
    split_dirs: tuple[str, str],
    lut: np.ndarray | None = None,
) -> SegmentationDataset:
    """List both splits (so layout errors come first), cap them, then load them."""
    train_pairs = _cap(list_pairs(split_dirs[0]), config.train_size, "train_size")
    test_pairs = _cap(list_pairs(split_dirs[1]), config.test_size, "test_size")
    size, n = config.image_size, len(class_names)
    return SegmentationDataset(
        name=config.name,
        class_names=tuple(class_names),
        train=_load_split(config.name, "train", train_pairs, size, n, lut),
        test=_load_split(config.name, "test", test_pairs, size, n, lut),
    )


@register("folder")
def folder(config: DatasetConfig) -> SegmentationDataset:
    """A generic layout for any dataset already converted to label PNGs."""
    root = _root(config)
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise BenchmarkError(
            f"folder: expected ROOT/classes.txt (one class name per line); not found under {root}"
        )
    class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    if not class_names or len(class_names) > IGNORE_INDEX:
        raise BenchmarkError(
            f"folder: {classes_file} lists {len(class_names)} classes; expected 1..{IGNORE_INDEX} "
            f"names, one per line ({IGNORE_INDEX} marks ignored pixels)"
        )

    def list_pairs(split: str) -> list[Pair]:
        image_dir = root / "images" / split
        images = [p for p in image_dir.glob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()]
        stems = [p.stem for p in images]
        if len(set(stems)) != len(stems):
            duplicate = next(s for s in sorted(stems) if stems.count(s) > 1)
            raise BenchmarkError(
                f"folder: several images in {image_dir} share the stem {duplicate!r}; stems must be unique"
            )
        return _pair_up(
            "folder", root, images, lambda p: root / "masks" / split / f"{p.stem}.png",
            f"images/{split}/*.png|jpg|jpeg", f"masks/{split}/<stem>.png",
        )  # fmt: skip

    return _build(config, class_names, list_pairs, ("train", "test"))


@register("cityscapes")
def cityscapes(config: DatasetConfig) -> SegmentationDataset:
    """Cityscapes fine annotations, 19 train ids; the official val split is the test split."""
    root = _root(config)

    def list_pairs(split: str) -> list[Pair]:
        images = list((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))

        def mask_of(image: Path) -> Path:
            stem = image.name.removesuffix("_leftImg8bit.png")
            return root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"

        return _pair_up(
            "cityscapes", root, images, mask_of,
            f"leftImg8bit/{split}/<city>/*_leftImg8bit.png", f"gtFine/{split}/<city>/<x>_gtFine_labelIds.png",
        )  # fmt: skip

    return _build(config, CITYSCAPES_CLASSES, list_pairs, ("train", "val"), _CITYSCAPES_LUT)


@register("ade20k")
def ade20k(config: DatasetConfig) -> SegmentationDataset:
    """ADE20K SceneParsing (ADEChallengeData2016); validation is the test split."""
    root = _root(config)

    def list_pairs(split: str) -> list[Pair]:
        images = list((root / "images" / split).glob("*.jpg"))
        return _pair_up(
            "ade20k", root, images, lambda p: root / "annotations" / split / f"{p.stem}.png",
            f"images/{split}/*.jpg", f"annotations/{split}/<stem>.png",
        )  # fmt: skip

    return _build(config, ADE20K_CLASSES, list_pairs, ("training", "validation"), _ADE20K_LUT)


@register("voc")
def voc(config: DatasetConfig) -> SegmentationDataset:
    """Pascal VOC 2012 segmentation; splits come from the official id lists."""
    root = _root(config)

    def list_pairs(split: str) -> list[Pair]:
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise BenchmarkError(
                f"voc: expected ROOT/ImageSets/Segmentation/{split}.txt (one image id per line); "
                f"not found under {root}"
            )
        ids = sorted({line.strip() for line in split_file.read_text().splitlines() if line.strip()})
        images = [root / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
        missing = next((p for p in images if not p.is_file()), None)
        if missing is not None:
            raise BenchmarkError(
                f"voc: {split_file} lists {missing.stem!r}, but ROOT/JPEGImages/<id>.jpg, "
                f"i.e. {missing}, is missing"
            )
        return _pair_up(
            "voc", root, images, lambda p: root / "SegmentationClass" / f"{p.stem}.png",
            f"JPEGImages/<id>.jpg listed in ImageSets/Segmentation/{split}.txt", "SegmentationClass/<id>.png",
        )  # fmt: skip

    return _build(config, VOC_CLASSES, list_pairs, ("train", "val"))
