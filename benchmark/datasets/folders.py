"""Datasets read from a local folder (``--data-root DIR``); nothing is ever downloaded.

Each builder lists its layout's (image, mask) pairs as :class:`Sample` s, checking the
layout first (an image without a mask, or the reverse, is named), and hands them to
:func:`benchmark.datasets.decode.load_split`, which decodes, resizes and caches them. Files
are taken in sorted order; ``train_size`` / ``test_size`` keep the first N. Errors say
which path was expected and show the layout (``ROOT`` is ``--data-root``):

``folder``
    ``ROOT/classes.txt`` (one class name per line; label k is line k),
    ``ROOT/images/<stem>.png|jpg|jpeg`` and ``ROOT/masks/<stem>.png`` (single-channel,
    value = label, 255 = ignore). Splits: the stems listed in ``ROOT/splits/train.txt`` and
    ``ROOT/splits/test.txt`` (or ``val.txt``) when present; else subfolders
    ``images/{train,test}/`` and ``masks/{train,test}/`` when present; else a fixed 1-in-5
    hold-out chosen by a hash of each stem (stable when files are added).

``cityscapes``
    ``ROOT/leftImg8bit/{train,val}/<city>/<x>_leftImg8bit.png`` and
    ``ROOT/gtFine/{train,val}/<city>/<x>_gtFine_labelIds.png``: raw label ids are mapped to
    the 19 standard train ids (all others -> 255). A ``<x>_gtFine_labelTrainIds.png`` beside
    it is used as it is. The test split is ``val``. Where every image of a split has its
    ``<x>_gtFine_instanceIds.png``, the split also carries instance ids (for instance-level
    attacks; ids below 1000 are not instances).

``ade20k``
    ADEChallengeData2016 (SceneParsing, 150 classes), the folder or its parent:
    ``images/{training,validation}/<x>.jpg`` and ``annotations/{training,validation}/<x>.png``.
    Raw 0 ("other") -> 255, raw k -> k - 1. Class names are the standard 150 short names (as
    in mmsegmentation), built in so that ``objectInfo150.csv`` need not be present.

``voc``
    Pascal VOC 2012, the ``VOCdevkit`` or the ``VOC2012`` folder: ``JPEGImages/<id>.jpg``,
    ``SegmentationClass/<id>.png`` (palette PNGs whose palette indices are the labels, 255 =
    boundary/ignore) and ``ImageSets/Segmentation/{train,val}.txt``. The test split is ``val``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmark.datasets import IGNORE_INDEX, DatasetConfig, SegmentationDataset, register
from benchmark.datasets.decode import Sample, load_split
from benchmark.errors import BenchmarkError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

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

STREET_SCENE_ATTACK = {"target": "road", "victims": ("car",)}
VOC_ATTACK = {"target": "background", "victims": ("person",)}

LAYOUTS = {
    "folder": "ROOT/classes.txt, ROOT/images/<stem>.png|jpg|jpeg, ROOT/masks/<stem>.png, optional "
              "ROOT/splits/{train,test}.txt (or images/{train,test}/ and masks/{train,test}/)",
    "cityscapes": "ROOT/leftImg8bit/{train,val}/<city>/<x>_leftImg8bit.png and "
                  "ROOT/gtFine/{train,val}/<city>/<x>_gtFine_labelIds.png",
    "ade20k": "ROOT/images/{training,validation}/<x>.jpg and ROOT/annotations/{training,validation}/<x>.png, "
              "ROOT = ADEChallengeData2016 or its parent",
    "voc": "ROOT/JPEGImages/<id>.jpg, ROOT/SegmentationClass/<id>.png and "
           "ROOT/ImageSets/Segmentation/{train,val}.txt, ROOT = VOC2012 or VOCdevkit",
}


def _lookup_table(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """Raw value -> label as an array, so remapping a mask is one indexing op."""
    table = np.full(size, IGNORE_INDEX, dtype=np.int64)
    for raw, label in mapping.items():
        table[raw] = label
    return table


CITYSCAPES_LUT = _lookup_table(CITYSCAPES_TRAIN_IDS)
ADE20K_LUT = _lookup_table({k: k - 1 for k in range(1, len(ADE20K_CLASSES) + 1)})


def layout_error(name: str, what: str) -> BenchmarkError:
    """A one-line error that says what was expected and shows the whole layout."""
    return BenchmarkError(f"{name}: {what} (expected layout: {LAYOUTS[name]})")


def _root(config: DatasetConfig, *nested: str) -> Path:
    """The dataset folder (``datasets.build`` has checked it exists), or the first of the
    ``nested`` official folder names inside it, so that either level can be given."""
    if config.root is None:
        raise BenchmarkError(f"dataset {config.name!r} needs --data-root DIR")
    root = Path(config.root)
    return next((root / n for n in nested if (root / n).is_dir()), root)


def _require(name: str, files: Sequence[Path], pattern: str, root: Path) -> None:
    if not files:
        raise layout_error(name, f"found no ROOT/{pattern} under {root}")


def _no_orphans(name: str, masks: Sequence[Path], image_stems: set[str], stem_of: Callable[[Path], str],
                image_pattern: str) -> None:
    """A mask whose image is missing is a broken layout, not something to skip silently."""
    orphan = next((m for m in sorted(masks) if stem_of(m) not in image_stems), None)
    if orphan is not None:
        raise layout_error(name, f"mask {orphan} has no image; expected ROOT/{image_pattern}")


def _build(config: DatasetConfig, class_names: Sequence[str], list_samples: Callable[[str], list[Sample]],
           split_names: tuple[str, str], attack_defaults: dict | None = None) -> SegmentationDataset:
    """List both splits (so layout errors come before any decoding), cap them, load them."""
    train = _cap(list_samples(split_names[0]), config.train_size)
    test = _cap(list_samples(split_names[1]), config.test_size)
    n = len(class_names)
    return SegmentationDataset(
        name=config.name, class_names=tuple(class_names),
        train=load_split(config.name, "train", train, config, n),
        test=load_split(config.name, "test", test, config, n),
        attack_defaults=dict(attack_defaults or {}),
    )


def _cap(samples: list[Sample], limit: int | None) -> list[Sample]:
    """Keep the first ``limit`` samples (sorted order), so a capped run is reproducible."""
    return samples if limit is None else samples[:limit]  # DatasetConfig rejects limits below 1


@register("folder")
def folder(config: DatasetConfig) -> SegmentationDataset:
    """Any dataset already converted to label PNGs: images/, masks/ and classes.txt."""
    root = _root(config)
    class_names = _read_classes(root)
    split_stems = _folder_splits(root)

    def list_samples(split: str) -> list[Sample]:
        sub = f"{split}/" if (root / "images" / split).is_dir() else ""
        image_dir, mask_dir = root / "images" / sub, root / "masks" / sub
        images = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        _require("folder", images, f"images/{sub}<stem>.png|jpg|jpeg", root)
        by_stem: dict[str, Path] = {}
        for image in images:
            if image.stem in by_stem:
                raise layout_error("folder", f"{by_stem[image.stem]} and {image.name} share the stem "
                                             f"{image.stem!r}; stems must be unique")
            by_stem[image.stem] = image
        _no_orphans("folder", list(mask_dir.glob("*.png")), set(by_stem), lambda m: m.stem,
                    f"images/{sub}<stem>.png|jpg|jpeg")
        samples = []
        for stem in sorted(by_stem) if sub else split_stems(split, by_stem):
            mask = mask_dir / f"{stem}.png"
            if not mask.is_file():
                raise layout_error("folder", f"image {by_stem[stem]} has no mask; expected {mask}")
            samples.append(Sample(by_stem[stem], mask))
        return samples

    return _build(config, class_names, list_samples, ("train", "test"))


def _read_classes(root: Path) -> list[str]:
    classes_file = root / "classes.txt"
    if not classes_file.is_file():
        raise layout_error("folder", f"ROOT/classes.txt (one class name per line) not found under {root}")
    names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    if not names or len(names) > IGNORE_INDEX:
        raise BenchmarkError(f"folder: {classes_file} lists {len(names)} classes; expected 1..{IGNORE_INDEX} "
                             f"names, one per line ({IGNORE_INDEX} marks ignored pixels)")
    return names


def _folder_splits(root: Path) -> Callable[[str, dict[str, Path]], list[str]]:
    """How a flat folder layout splits: by the lists in ROOT/splits/, or else by a hash of each
    stem (1 in 5 held out for testing; a stem's split never changes as files are added)."""
    listed = {"train": root / "splits" / "train.txt", "test": root / "splits" / "test.txt"}
    if not listed["test"].is_file() and (root / "splits" / "val.txt").is_file():
        listed["test"] = root / "splits" / "val.txt"
    if not any(p.is_file() for p in listed.values()):
        def held_out(stem: str) -> bool:
            return int(hashlib.sha256(stem.encode()).hexdigest(), 16) % 5 == 0

        return lambda split, images: [s for s in sorted(images) if held_out(s) == (split == "test")]

    def from_list(split: str, images: dict[str, Path]) -> list[str]:
        if not listed[split].is_file():
            raise layout_error("folder", f"{listed[split]} is missing (another split list exists)")
        stems = sorted({line.strip() for line in listed[split].read_text().splitlines() if line.strip()})
        missing = next((s for s in stems if s not in images), None)
        if missing is not None:
            raise layout_error("folder", f"{listed[split]} lists {missing!r}, but ROOT/images/{missing}.png|jpg|jpeg "
                                         f"is missing")
        return stems

    return from_list


@register("cityscapes")
def cityscapes(config: DatasetConfig) -> SegmentationDataset:
    """Cityscapes fine annotations, 19 train ids; the official val split is the test split."""
    root = _root(config)

    def list_samples(split: str) -> list[Sample]:
        images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        _require("cityscapes", images, f"leftImg8bit/{split}/<city>/<x>_leftImg8bit.png", root)
        labels = root / "gtFine" / split
        _no_orphans("cityscapes", list(labels.glob("*/*_gtFine_labelIds.png")),
                    {image.name.removesuffix("_leftImg8bit.png") for image in images},
                    lambda m: m.name.removesuffix("_gtFine_labelIds.png"),
                    f"leftImg8bit/{split}/<city>/<x>_leftImg8bit.png")
        samples = []
        for image in images:
            stem = labels / image.parent.name / image.name.removesuffix("_leftImg8bit.png")
            train_ids, label_ids = Path(f"{stem}_gtFine_labelTrainIds.png"), Path(f"{stem}_gtFine_labelIds.png")
            instance_ids = Path(f"{stem}_gtFine_instanceIds.png")
            instances = instance_ids if instance_ids.is_file() else None
            if train_ids.is_file():
                samples.append(Sample(image, train_ids, instances=instances))
            elif label_ids.is_file():
                samples.append(Sample(image, label_ids, CITYSCAPES_LUT, instances))
            else:
                raise layout_error("cityscapes", f"image {image} has no mask; expected {label_ids}")
        return samples

    return _build(config, CITYSCAPES_CLASSES, list_samples, ("train", "val"), STREET_SCENE_ATTACK)


@register("ade20k")
def ade20k(config: DatasetConfig) -> SegmentationDataset:
    """ADE20K SceneParsing (ADEChallengeData2016); validation is the test split."""
    root = _root(config, "ADEChallengeData2016")

    def list_samples(split: str) -> list[Sample]:
        images = sorted((root / "images" / split).glob("*.jpg"))
        _require("ade20k", images, f"images/{split}/<x>.jpg", root)
        annotations = root / "annotations" / split
        _no_orphans("ade20k", list(annotations.glob("*.png")), {p.stem for p in images}, lambda m: m.stem,
                    f"images/{split}/<x>.jpg")
        samples = []
        for image in images:
            mask = annotations / f"{image.stem}.png"
            if not mask.is_file():
                raise layout_error("ade20k", f"image {image} has no mask; expected {mask}")
            samples.append(Sample(image, mask, ADE20K_LUT))
        return samples

    return _build(config, ADE20K_CLASSES, list_samples, ("training", "validation"), STREET_SCENE_ATTACK)


@register("voc")
def voc(config: DatasetConfig) -> SegmentationDataset:
    """Pascal VOC 2012 segmentation; splits come from the official id lists."""
    root = _root(config, "VOC2012", "VOCdevkit/VOC2012")

    def list_samples(split: str) -> list[Sample]:
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise layout_error("voc", f"ROOT/ImageSets/Segmentation/{split}.txt (one image id per line) "
                                      f"not found under {root}")
        samples = []
        for image_id in sorted({line.strip() for line in split_file.read_text().splitlines() if line.strip()}):
            image, mask = root / "JPEGImages" / f"{image_id}.jpg", root / "SegmentationClass" / f"{image_id}.png"
            if not image.is_file():
                raise layout_error("voc", f"{split_file.name} lists {image_id!r}, but {image} is missing")
            if not mask.is_file():
                raise layout_error("voc", f"image {image} has no mask; expected {mask}")
            samples.append(Sample(image, mask))
        return samples

    return _build(config, VOC_CLASSES, list_samples, ("train", "val"), VOC_ATTACK)
