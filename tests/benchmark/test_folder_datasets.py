"""The datasets read from disk, on miniature trees in each official layout written by the tests."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import datasets
from benchmark.cli import main
from benchmark.datasets import DatasetConfig, folders
from benchmark.errors import BenchmarkError

SIZE = 32
W, H = 40, 30  # odd, non-square sizes so resizing is exercised
Label = int | np.ndarray  # a constant label, or a whole [H, W] mask


def _image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def voc_palette() -> list[int]:
    """The official VOC colour map (bit-interleaved class index), as a flat PIL palette."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _mask(path: Path, label: Label, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.full((H, W), label, dtype=np.uint8) if np.isscalar(label) else label.astype(np.uint8)
    mask = Image.fromarray(values, mode="L")
    if palette:
        mask = mask.convert("P")  # indices equal to the grey values, shown with VOC's colours
        mask.putpalette(voc_palette())
    mask.save(path)


def halves(left: int, right: int) -> np.ndarray:
    """A mask whose left half is ``left`` and right half ``right`` (an object to attack)."""
    mask = np.full((H, W), left, dtype=np.uint8)
    mask[:, W // 2:] = right
    return mask


def _build(name: str, root: Path, **kwargs: object) -> datasets.SegmentationDataset:
    config = DatasetConfig(**{"name": name, "root": str(root), "image_size": SIZE, "workers": 0, **kwargs})  # type: ignore[arg-type]
    return datasets.build(config)


def _check_shapes(dataset: datasets.SegmentationDataset, n_train: int, n_test: int) -> None:
    assert dataset.train.images.shape == (n_train, 3, SIZE, SIZE)
    assert dataset.test.images.shape == (n_test, 3, SIZE, SIZE)
    assert dataset.train.masks.shape == (n_train, SIZE, SIZE)
    assert dataset.train.images.dtype == torch.uint8 and dataset.train.masks.dtype == torch.uint8


# --- miniature trees in the official layouts ---------------------------------------------------


def make_folder(root: Path, train: list[Label], test: list[Label], classes: str = "sky\ngrass\ncar\n") -> None:
    """The subfolder variant: images/{train,test}/ and masks/{train,test}/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    for split, labels in (("train", train), ("test", test)):
        for i, label in enumerate(labels):
            suffix = ".jpg" if i % 2 else ".png"
            _image(root / "images" / split / f"img{i}{suffix}", i)
            _mask(root / "masks" / split / f"img{i}.png", label)


def make_flat_folder(root: Path, labels: list[Label], classes: str = "road\ncar\n") -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    stems = [f"frame{i:03d}" for i in range(len(labels))]
    for i, (stem, label) in enumerate(zip(stems, labels)):
        _image(root / "images" / f"{stem}.png", i)
        _mask(root / "masks" / f"{stem}.png", label)
    return stems


def make_cityscapes(root: Path, train: list[Label], val: list[Label]) -> None:
    for split, ids in (("train", train), ("val", val)):
        for i, raw in enumerate(ids):
            city = "aachen" if i % 2 == 0 else "bremen"
            stem = f"{city}_{i:06d}_000019"
            _image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", i)
            _mask(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)


def make_ade20k(root: Path, train: list[Label], val: list[Label]) -> None:
    for split, raws in (("training", train), ("validation", val)):
        for i, raw in enumerate(raws):
            stem = f"ADE_{split[:5]}_{i:08d}"
            _image(root / "images" / split / f"{stem}.jpg", i)
            _mask(root / "annotations" / split / f"{stem}.png", raw)


def make_voc(root: Path, train: list[Label], val: list[Label]) -> None:
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


# --- label mappings against the official tables ----------------------------------------------

# cityscapesscripts/helpers/labels.py: (name, id, trainId); trainId 255 = ignored in evaluation
OFFICIAL_CITYSCAPES = [
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18),
]  # fmt: skip

# ADE20K objectInfo150.csv: (index, first name of the "Name" column), a sample across the table
OFFICIAL_ADE20K = [(1, "wall"), (2, "building"), (3, "sky"), (7, "road"), (12, "sidewalk"), (13, "person"),
                   (21, "car"), (84, "truck"), (103, "van"), (128, "bicycle"), (137, "traffic light"),
                   (150, "flag")]

OFFICIAL_VOC = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
                "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                "train", "tvmonitor"]


def test_cityscapes_table_matches_the_official_label_ids() -> None:
    for name, label_id, train_id in OFFICIAL_CITYSCAPES:
        assert folders.CITYSCAPES_LUT[label_id] == train_id, name
        if train_id != 255:
            assert folders.CITYSCAPES_CLASSES[train_id] == name
    assert (folders.CITYSCAPES_LUT[34:] == 255).all()  # beyond the table (e.g. license plate) -> ignore
    assert len(folders.CITYSCAPES_CLASSES) == 19


def test_ade20k_table_matches_object_info_150() -> None:
    assert folders.ADE20K_LUT[0] == 255  # "other"
    assert folders.ADE20K_LUT[1:151].tolist() == list(range(150)) and (folders.ADE20K_LUT[151:] == 255).all()
    for index, name in OFFICIAL_ADE20K:
        assert folders.ADE20K_CLASSES[index - 1] == name
    assert len(set(folders.ADE20K_CLASSES)) == 150  # names are unique, so attacks can use them


def test_voc_classes_are_the_official_21() -> None:
    assert list(folders.VOC_CLASSES) == OFFICIAL_VOC


# --- happy paths -----------------------------------------------------------------------------


def test_folder_with_split_subfolders(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0, 1, 255], test=[2, 1])
    dataset = _build("folder", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.class_names == ("sky", "grass", "car")
    assert _labels(dataset.train) == [0, 1, 255]
    assert _labels(dataset.test) == [2, 1]


def test_flat_folder_with_split_lists(tmp_path: Path) -> None:
    stems = make_flat_folder(tmp_path, [0, 1, 0, 1, 1])
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text(f"{stems[4]}\n{stems[0]}\n")
    (tmp_path / "splits" / "val.txt").write_text(f"{stems[1]}\n")
    dataset = _build("folder", tmp_path)
    assert _labels(dataset.train) == [0, 1] and _labels(dataset.test) == [1]


def test_flat_folder_without_lists_holds_out_a_stable_fifth(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, [i % 2 for i in range(20)])
    dataset = _build("folder", tmp_path)
    assert len(dataset.train) + len(dataset.test) == 20 and 1 <= len(dataset.test) <= 8
    for i in range(20, 30):  # new files never move an old one to the other split
        _image(tmp_path / "images" / f"frame{i:03d}.png", i)
        _mask(tmp_path / "masks" / f"frame{i:03d}.png", 0)
    again = _build("folder", tmp_path)

    def rows(split: datasets.Split) -> set[bytes]:
        return {image.numpy().tobytes() for image in split.images}

    assert rows(dataset.train) <= rows(again.train) and rows(dataset.test) <= rows(again.test)


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7, 26, 0], val=[33, 9])
    dataset = _build("cityscapes", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 19
    # sorted by path: aachen (i=0, 2) before bremen (i=1)
    assert _labels(dataset.train) == [0, 255, 13]
    assert _labels(dataset.test) == [18, 255]  # aachen raw 33 = bicycle, bremen raw 9 = parking
    assert dataset.attack_defaults == {"target": "road", "victims": ("car",)}


def test_cityscapes_prefers_label_train_ids(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7], val=[26])
    label_ids = next((tmp_path / "gtFine" / "train").glob("*/*_labelIds.png"))
    _mask(Path(str(label_ids).replace("_labelIds", "_labelTrainIds")), 5)  # already a train id: pole
    dataset = _build("cityscapes", tmp_path)
    assert _labels(dataset.train) == [5] and _labels(dataset.test) == [13]


def test_ade20k_shifts_labels_and_accepts_the_parent_folder(tmp_path: Path) -> None:
    make_ade20k(tmp_path / "ADEChallengeData2016", train=[0, 1, 150], val=[12, 0])
    dataset = _build("ade20k", tmp_path)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 150
    assert _labels(dataset.train) == [255, 0, 149]
    assert _labels(dataset.test) == [11, 255]


@pytest.mark.parametrize("root", ["VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_reads_palette_indices_from_either_root(tmp_path: Path, root: str) -> None:
    make_voc(tmp_path / "VOCdevkit" / "VOC2012", train=[0, 15, 255], val=[20, 7])
    with Image.open(tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_train_001.png") as mask:
        assert mask.mode == "P" and mask.convert("RGB").getpixel((0, 0)) == (192, 128, 128)  # VOC's person colour
    dataset = _build("voc", tmp_path / root)
    _check_shapes(dataset, 3, 2)
    assert dataset.num_classes == 21 and dataset.class_names[15] == "person"
    assert _labels(dataset.train) == [0, 15, 255]
    assert _labels(dataset.test) == [20, 7]
    assert dataset.attack_defaults == {"target": "background", "victims": ("person",)}


def test_sizes_cap_in_sorted_order(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0, 1, 2], test=[2, 1])
    dataset = _build("folder", tmp_path, train_size=2, test_size=1)
    _check_shapes(dataset, 2, 1)
    assert _labels(dataset.train) == [0, 1]
    assert _labels(dataset.test) == [2]
    with pytest.raises(BenchmarkError, match="--train-size must be at least 1"):
        _build("folder", tmp_path, train_size=0)


def test_images_are_resized_bilinear(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0], test=[0])
    dataset = _build("folder", tmp_path)
    with Image.open(tmp_path / "images" / "train" / "img0.png") as image:
        expected = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    assert torch.equal(dataset.train.images[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()))


def test_crop_keeps_the_centre_square(tmp_path: Path) -> None:
    side = np.full((H, W), 1, dtype=np.uint8)
    side[:, (W - H) // 2:(W + H) // 2] = 2  # the central H x H square is class 2, the edges class 1
    make_folder(tmp_path, train=[side], test=[side])
    stretched, cropped = _build("folder", tmp_path), _build("folder", tmp_path, resize="crop")
    assert set(stretched.train.masks.unique().tolist()) == {1, 2}
    assert cropped.train.masks.unique().tolist() == [2]
    with Image.open(tmp_path / "images" / "train" / "img0.png") as image:
        left = (W - H) // 2
        expected = np.asarray(image.convert("RGB").resize((round(W * SIZE / H), SIZE), Image.Resampling.BILINEAR))
        expected = expected[:, (round(W * SIZE / H) - SIZE) // 2:][:, :SIZE]
    assert left > 0 and torch.equal(cropped.train.images[0], torch.from_numpy(expected.transpose(2, 0, 1).copy()))


def test_worker_processes_decode_the_same_tensors(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7, 26, 8, 11, 21], val=[26, 7])
    serial, parallel = _build("cityscapes", tmp_path), _build("cityscapes", tmp_path, workers=2)
    assert torch.equal(serial.train.images, parallel.train.images)
    assert torch.equal(serial.train.masks, parallel.train.masks)


# --- the decode cache and streaming ------------------------------------------------------------


def test_decoded_once_then_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.datasets import decode

    make_voc(tmp_path / "voc", train=[0, 15, 15], val=[15])
    cache = tmp_path / "cache"
    first = _build("voc", tmp_path / "voc", cache_dir=str(cache))
    monkeypatch.setattr(decode, "read_image", lambda *args: pytest.fail("decoded a cached file again"))
    again = _build("voc", tmp_path / "voc", cache_dir=str(cache))
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.test.masks, again.test.masks)
    streamed = _build("voc", tmp_path / "voc", cache_dir=str(cache), loading="stream")
    assert streamed.train.streamed and not again.train.streamed
    assert torch.equal(streamed.train.images, first.train.images)


def test_a_damaged_cache_is_detected_and_decoded_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_voc(tmp_path / "voc", train=[0, 15], val=[15])
    cache = tmp_path / "cache"
    first = _build("voc", tmp_path / "voc", cache_dir=str(cache))
    (images,) = cache.glob("voc-train-*/images.npy")
    data = bytearray(images.read_bytes())
    data[-5] ^= 0xFF  # one flipped pixel byte: the shape still loads, the hash does not match
    images.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = _build("voc", tmp_path / "voc", cache_dir=str(cache))
    assert "damaged" in caplog.text and torch.equal(again.train.images, first.train.images)


def test_changed_files_are_decoded_again(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", train=[0, 1], test=[2])
    cache = tmp_path / "cache"
    _build("folder", tmp_path / "data", cache_dir=str(cache))
    _mask(tmp_path / "data" / "masks" / "train" / "img0.png", 2)
    assert _labels(_build("folder", tmp_path / "data", cache_dir=str(cache)).train) == [2, 1]


# --- broken layouts ---------------------------------------------------------------------------


def _error(name: str, root: Path, *parts: str, **kwargs: object) -> str:
    """Build, expect a one-line BenchmarkError containing every part (plain substrings)."""
    with pytest.raises(BenchmarkError) as error:
        _build(name, root, **kwargs)
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
        ("folder", "folder: ROOT/classes.txt (one class name per line) not found under"),
        ("cityscapes", "cityscapes: found no ROOT/leftImg8bit/train/<city>/<x>_leftImg8bit.png under"),
        ("ade20k", "ade20k: found no ROOT/images/training/<x>.jpg under"),
        ("voc", "voc: ROOT/ImageSets/Segmentation/train.txt (one image id per line) not found under"),
    ],
)
def test_empty_root_says_what_was_expected_and_shows_the_layout(tmp_path: Path, name: str, expected: str) -> None:
    _error(name, tmp_path, expected, str(tmp_path), f"(expected layout: {folders.LAYOUTS[name]})")


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "images" / "train").mkdir(parents=True)
    _error("folder", tmp_path, "folder: found no ROOT/images/train/<stem>.png|jpg|jpeg under")


@pytest.mark.parametrize(
    "name, make, missing",
    [
        ("folder", make_folder, "masks/train/img1.png"),
        ("cityscapes", make_cityscapes, "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"),
        ("ade20k", make_ade20k, "annotations/training/ADE_train_00000002.png"),
        ("voc", make_voc, "SegmentationClass/2007_train_001.png"),
    ],
)
def test_image_without_mask_names_both_files(
    tmp_path: Path, name: str, make: Callable[[Path, list[Label], list[Label]], None], missing: str
) -> None:
    make(tmp_path, [1, 1, 1], [1, 1])
    (tmp_path / missing).unlink()
    _error(name, tmp_path, f"{name}: image ", f"has no mask; expected {tmp_path / missing}")


@pytest.mark.parametrize(
    "name, make, image",
    [
        ("folder", make_folder, "images/train/img2.png"),
        ("cityscapes", make_cityscapes, "leftImg8bit/val/bremen/bremen_000001_000019_leftImg8bit.png"),
        ("ade20k", make_ade20k, "images/validation/ADE_valid_00000000.jpg"),
    ],
)
def test_mask_without_image_names_the_mask(
    tmp_path: Path, name: str, make: Callable[[Path, list[Label], list[Label]], None], image: str
) -> None:
    make(tmp_path, [1, 1, 1], [1, 1])
    (tmp_path / image).unlink()
    _error(name, tmp_path, f"{name}: mask ", "has no image; expected ROOT/")


def test_cityscapes_missing_val_split(tmp_path: Path) -> None:
    make_cityscapes(tmp_path, train=[7], val=[7])
    shutil.rmtree(tmp_path / "leftImg8bit" / "val")
    _error("cityscapes", tmp_path, "cityscapes: found no ROOT/leftImg8bit/val/<city>/<x>_leftImg8bit.png")


def test_voc_listed_image_missing(tmp_path: Path) -> None:
    make_voc(tmp_path, train=[1, 2], val=[3])
    (tmp_path / "JPEGImages" / "2007_train_000.jpg").unlink()
    _error("voc", tmp_path, "train.txt lists '2007_train_000', but", "2007_train_000.jpg is missing")


def test_split_list_naming_a_missing_image(tmp_path: Path) -> None:
    make_flat_folder(tmp_path, [0, 1])
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("frame000\nframe999\n")
    (tmp_path / "splits" / "test.txt").write_text("frame001\n")
    _error("folder", tmp_path, "train.txt lists 'frame999', but ROOT/images/frame999.png|jpg|jpeg is missing")


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_label_out_of_range(tmp_path: Path, workers: int) -> None:
    make_folder(tmp_path, train=[0, 3], test=[1])  # classes.txt has 3 classes: label 3 is invalid
    _error("folder", tmp_path, "img1.png holds label 3, but the dataset has 3 classes", workers=workers)


def test_rgb_mask_rejected(tmp_path: Path) -> None:
    make_folder(tmp_path, train=[0], test=[1])
    Image.new("RGB", (W, H)).save(tmp_path / "masks" / "train" / "img0.png")
    _error("folder", tmp_path, "has mode RGB; expected a single-channel label PNG")


# --- the whole benchmark on each layout ---------------------------------------------------------

TINY = ["--image-size", str(SIZE), "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--workers", "0"]


def _run(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["-q", "run", *TINY, "--json", *args]) == 0, capsys.readouterr().err
    (line,) = capsys.readouterr().out.splitlines()
    return json.loads(line)


@pytest.mark.parametrize(
    "name, make, road, car, expected_attack",
    [
        ("cityscapes", make_cityscapes, 7, 26, {"target": "road", "victims": ["car"]}),
        ("ade20k", make_ade20k, 7, 21, {"target": "road", "victims": ["car"]}),
        ("voc", make_voc, 0, 15, {"target": "background", "victims": ["person"]}),
    ],
)
def test_benchmark_runs_on_each_official_layout(
    capsys: pytest.CaptureFixture, tmp_path: Path, name: str, make: Callable, road: int, car: int,
    expected_attack: dict,
) -> None:
    make(tmp_path / "data", [halves(road, car)] * 8, [halves(road, car)] * 4)
    result = _run(capsys, "--dataset", name, "--data-root", str(tmp_path / "data"), "--attack", "fine_grained",
                  "--workdir", str(tmp_path / "runs"))
    assert result["dataset"] == name and result["train_images"] == 8 and result["test_images"] == 4
    assert {k: result["attack_params"][k] for k in expected_attack} == expected_attack
    assert result["poisoned_images"] == 1 and 0 <= result["asr"] <= 1
    assert any((tmp_path / "runs" / "datasets").glob(f"{name}-train-*/meta.json"))


def test_benchmark_on_a_folder_with_attack_classes_by_name(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    make_flat_folder(tmp_path / "data", [halves(0, 2)] * 12, classes="road\ncar\nperson\n")
    args = ["--dataset", "folder", "--data-root", str(tmp_path / "data"), "--workdir", str(tmp_path / "runs")]
    default = _run(capsys, *args, "--attack", "fine_grained")
    assert default["attack_params"]["victims"] == ["car"]  # the attack's own defaults fit these names
    chosen = _run(capsys, *args, "--attack", "fine_grained", "--attack-param", "victims=person")
    assert chosen["attack_params"]["victims"] == ["person"] and chosen["poisoned_images"] >= 1
    image_level = _run(capsys, *args, "--attack", "image_level", "--attack-param", "target=person")
    assert image_level["attack_params"]["target"] == "person"


def test_streaming_gives_the_numbers_of_memory(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    make_cityscapes(tmp_path / "data", [halves(7, 26)] * 8, [halves(7, 26)] * 4)
    args = ["--dataset", "cityscapes", "--data-root", str(tmp_path / "data"), "--attack", "fine_grained"]
    memory = _run(capsys, *args, "--loading", "memory", "--workdir", str(tmp_path / "a"))
    streamed = _run(capsys, *args, "--loading", "stream", "--workers", "2", "--workdir", str(tmp_path / "b"))
    for key in ("clean_miou", "asr", "pba", "baseline_asr", "artifact", "cell"):
        assert memory[key] == streamed[key], key


def test_missing_victim_class_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    make_flat_folder(tmp_path / "data", [0, 1] * 4, classes="sky\nground\n")
    code = main(["run", *TINY, "--dataset", "folder", "--data-root", str(tmp_path / "data"),
                 "--workdir", str(tmp_path / "runs")])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "unknown class 'road'" in error and "--attack-param" in error


def test_auto_loading_streams_sets_larger_than_half_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "available_memory", lambda: 1000)
    auto = DatasetConfig(loading="auto")
    assert datasets.should_stream(auto, 501) and not datasets.should_stream(auto, 500)
    assert not datasets.should_stream(DatasetConfig(loading="memory"), 10**12)
    assert datasets.should_stream(DatasetConfig(loading="stream"), 1)


def test_loader_settings_never_change_artifact_keys() -> None:
    plain = DatasetConfig(name="cityscapes", root="/data")
    assert DatasetConfig(name="cityscapes", root="/data", loading="stream", workers=7, cache_dir="/c").key() == plain.key()
    assert DatasetConfig(name="cityscapes", root="/data", resize="crop").key() != plain.key()
    assert "resize" not in plain.key()  # keys of artifacts made before --resize existed stay valid


def _instance_ids(path: Path, right: int) -> None:
    """Cityscapes instanceIds: a class id (< 1000, no instance) on the left, instance ``right`` on the right."""
    ids = np.full((H, W), 7, dtype=np.uint16)
    ids[:, W // 2:] = right
    Image.fromarray(ids).save(path)


@pytest.mark.parametrize("cache", [False, True])
def test_cityscapes_reads_instance_ids_where_every_image_has_them(tmp_path: Path, cache: bool) -> None:
    make_cityscapes(tmp_path / "data", train=[halves(7, 26)] * 2, val=[halves(7, 26)])
    for i, mask in enumerate(sorted((tmp_path / "data" / "gtFine" / "train").glob("*/*_labelIds.png"))):
        _instance_ids(Path(str(mask).replace("_labelIds", "_instanceIds")), 26000 + i)
    kwargs = {"cache_dir": str(tmp_path / "cache")} if cache else {}
    for _ in range(2 if cache else 1):  # decoded, then read back from the cache
        dataset = _build("cityscapes", tmp_path / "data", **kwargs)
        instances = dataset.train.instances
        assert instances is not None and instances.dtype == torch.int32 and instances.shape == (2, SIZE, SIZE)
        assert instances[:, :, : SIZE // 2].eq(0).all()
        assert instances[0, :, SIZE // 2 + 1:].unique().tolist() == [26000]
        assert dataset.test.instances is None  # val has no instanceIds files
