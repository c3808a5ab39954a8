"""Decoding image/mask files into split tensors, once, with worker processes and a disk cache.

Every dataset read from disk hands its list of :class:`Sample` s to :func:`load_split`.
Files are decoded, resized (``stretch`` or ``crop``) and their mask values mapped to train
labels by a DataLoader with ``workers`` processes, straight into ``uint8`` arrays. With a
``cache_dir`` the arrays are ``.npy`` files written atomically and recorded with their
SHA-256 in ``meta.json``, so a set is decoded once ever: later runs load it (``memory``) or
memory-map it (``stream``), and a damaged cache is detected and decoded again. Samples that
name an instance-id file (Cityscapes ``*_gtFine_instanceIds.png``) also give the split its
``int32`` instance ids, decoded and cached the same way, when every sample of the split has one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark.datasets import IGNORE_INDEX, DatasetConfig, Split, should_stream
from benchmark.errors import BenchmarkError
from benchmark.store import atomic_write_json, content_key, file_lock, read_json

log = logging.getLogger(__name__)

MASK_MODES = ("L", "P", "I", "I;16")
PARTS = ("images", "masks")
INSTANCE_PART = "instances"
FIRST_INSTANCE_ID = 1000
"""Cityscapes convention: ids below 1000 are a class id (stuff, or a crowd), not an instance."""
CACHE_VERSION = 1


@dataclass
class Sample:
    """One image and its mask; ``lut`` maps raw mask values to labels (None: values are labels)."""

    image: Path
    mask: Path
    lut: np.ndarray | None = None
    instances: Path | None = None
    """Instance-id PNG (ids below ``FIRST_INSTANCE_ID`` read as 0 = no instance), if any."""


def fit(image: Image.Image, size: tuple[int, int], resize: str, resample: Image.Resampling) -> Image.Image:
    """``stretch`` to ``size`` (height, width), or ``crop``: scale to cover it, keep the centre."""
    out_h, out_w = size
    if resize == "stretch":
        return image.resize((out_w, out_h), resample)
    width, height = image.size
    scale = max(out_w / width, out_h / height)
    width, height = max(out_w, round(width * scale)), max(out_h, round(height * scale))
    left, top = (width - out_w) // 2, (height - out_h) // 2
    return image.resize((width, height), resample).crop((left, top, left + out_w, top + out_h))


def read_image(path: Path, size: tuple[int, int], resize: str) -> np.ndarray:
    """``uint8 [3,height,width]``; any PIL mode (grey, RGBA, CMYK jpg) is converted to RGB."""
    try:
        with Image.open(path) as image:
            rgb = fit(image.convert("RGB"), size, resize, Image.Resampling.BILINEAR)
    except OSError as error:
        raise BenchmarkError(f"cannot read image {path}: {error}") from error
    return np.array(rgb, dtype=np.uint8).transpose(2, 0, 1)


def read_mask(sample: Sample, size: tuple[int, int], resize: str, num_classes: int) -> np.ndarray:
    """Labels ``uint8 [height,width]``: raw values (palette indices for 'P' masks, never RGB)
    through the sample's table, resized nearest so labels are never blended."""
    path = sample.mask
    try:
        with Image.open(path) as mask:
            if mask.mode not in MASK_MODES:
                raise BenchmarkError(f"mask {path} has mode {mask.mode}; expected a single-channel "
                                     f"label PNG (mode L or P, value = label)")
            if mask.mode == "I;16":
                mask = mask.convert("I")
            raw = np.asarray(fit(mask, size, resize, Image.Resampling.NEAREST)).astype(np.int64)
    except OSError as error:
        raise BenchmarkError(f"cannot read mask {path}: {error}") from error
    if sample.lut is not None:  # values beyond the table are unlabelled too
        inside = (raw >= 0) & (raw < len(sample.lut))
        raw = np.where(inside, sample.lut[np.clip(raw, 0, len(sample.lut) - 1)], IGNORE_INDEX)
    bad = (raw != IGNORE_INDEX) & ((raw < 0) | (raw >= num_classes))
    if bad.any():
        raise BenchmarkError(f"mask {path} holds label {int(raw[bad][0])}, but the dataset has {num_classes} "
                             f"classes (labels 0..{num_classes - 1}, {IGNORE_INDEX} = ignore)")
    return raw.astype(np.uint8)


def read_instances(path: Path, size: tuple[int, int], resize: str) -> np.ndarray:
    """Instance ids ``int32 [height,width]`` (0 = none), resized nearest."""
    try:
        with Image.open(path) as ids:
            raw = np.asarray(fit(ids.convert("I"), size, resize, Image.Resampling.NEAREST)).astype(np.int32)
    except OSError as error:
        raise BenchmarkError(f"cannot read instance ids {path}: {error}") from error
    return np.where(raw >= FIRST_INSTANCE_ID, raw, 0).astype(np.int32)


class _Decoder(Dataset):
    """Decodes sample ``i`` in a worker; an error travels back as text (a worker's exception
    would reach the user wrapped in a multi-line traceback)."""

    def __init__(self, samples: Sequence[Sample], size: tuple[int, int], resize: str, num_classes: int) -> None:
        self.samples, self.size, self.resize, self.num_classes = samples, size, resize, num_classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        sample = self.samples[i]
        no_instances = np.zeros(self.size, dtype=np.int32)
        try:
            image = read_image(sample.image, self.size, self.resize)
            mask = read_mask(sample, self.size, self.resize, self.num_classes)
            instances = no_instances if sample.instances is None else read_instances(sample.instances, self.size, self.resize)
        except BenchmarkError as error:
            empty = np.zeros(self.size, dtype=np.uint8)
            return np.zeros((3, *self.size), dtype=np.uint8), empty, no_instances, str(error)
        return image, mask, instances, ""


def decode_into(images: np.ndarray, masks: np.ndarray, samples: Sequence[Sample], config: DatasetConfig,
                num_classes: int, desc: str, instances: np.ndarray | None = None) -> None:
    """Fill ``images`` / ``masks`` (and ``instances`` if given; arrays or memory maps) with the
    decoded samples, in order."""
    decoder = _Decoder(samples, config.size, config.resize, num_classes)
    loader = DataLoader(decoder, batch_size=4, num_workers=min(config.workers, len(samples)))
    start = 0
    for image_batch, mask_batch, instance_batch, errors in tqdm(loader, desc=desc, unit="batch", leave=False,
                                                                disable=None):
        error = next((e for e in errors if e), None)
        if error is not None:
            raise BenchmarkError(f"{desc}: {error}")
        end = start + len(image_batch)
        images[start:end], masks[start:end] = image_batch.numpy(), mask_batch.numpy()
        if instances is not None:
            instances[start:end] = instance_batch.numpy()
        start = end


def load_split(name: str, split: str, samples: Sequence[Sample], config: DatasetConfig, num_classes: int) -> Split:
    """The decoded split: from the cache when there is a valid one, else decoded (and cached)."""
    height, width = config.size
    stream = should_stream(config, len(samples) * height * width * 4)
    desc = f"{name} {split}"
    parts = PARTS + (INSTANCE_PART,) if samples and all(s.instances is not None for s in samples) else PARTS
    instances = None
    if config.cache_dir is None:
        images = np.empty((len(samples), 3, height, width), dtype=np.uint8)
        masks = np.empty((len(samples), height, width), dtype=np.uint8)
        if INSTANCE_PART in parts:
            instances = np.empty((len(samples), height, width), dtype=np.int32)
        decode_into(images, masks, samples, config, num_classes, desc, instances)
    else:
        folder = Path(config.cache_dir) / f"{name}-{split}-{cache_key(config, samples)}"
        with file_lock(folder.with_suffix(".lock")):
            if not cache_is_intact(folder, parts):
                write_cache(folder, samples, config, num_classes, desc, parts)
            images, masks, *rest = (np.load(folder / f"{part}.npy", mmap_mode="c" if stream else None) for part in parts)
            instances = rest[0] if rest else None
    log.info("%s: %d images at %dx%d (%s)%s", desc, len(samples), height, width, "streamed" if stream else "in memory",
             ", with instance ids" if instances is not None else "")
    return Split(torch.from_numpy(images), torch.from_numpy(masks),
                 None if instances is None else torch.from_numpy(instances), streamed=stream)


def cache_key(config: DatasetConfig, samples: Sequence[Sample]) -> str:
    """Changes when a file, the size, the resize mode or a label table does (not the seed:
    every seed of a grid shares one decoded set)."""
    files = []
    for sample in samples:
        for path in (sample.image, sample.mask) + ((sample.instances,) if sample.instances else ()):
            stat = path.stat()
            files.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    tables = {id(s.lut): s.lut for s in samples if s.lut is not None}  # a few tables shared by all samples
    luts = sorted(content_key(table.tolist()) for table in tables.values())
    return content_key({"version": CACHE_VERSION, "size": config.image_size, "resize": config.resize,
                        "files": files, "luts": luts})


def cache_is_intact(folder: Path, parts: tuple[str, ...] = PARTS) -> bool:
    """Whether ``meta.json`` marks the cache complete and both arrays still have their recorded
    hashes (a damaged cache is decoded again, with a warning; a fresh one was just hashed)."""
    meta = read_json(folder / "meta.json")
    if meta is None:
        return False
    for part in parts:
        path = folder / f"{part}.npy"
        if not path.is_file() or file_sha256(path) != meta.get(part):
            log.warning("decoded cache %s is damaged (hash mismatch); decoding the files again", path)
            return False
    return True


def write_cache(folder: Path, samples: Sequence[Sample], config: DatasetConfig, num_classes: int, desc: str,
                parts: tuple[str, ...] = PARTS) -> None:
    """Decode into memory-mapped ``.npy`` temp files, then rename them into place; ``meta.json``
    (with both hashes) is written last and marks the cache complete."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    n = len(samples)
    shapes = {"images": (n, 3, *config.size), "masks": (n, *config.size), INSTANCE_PART: (n, *config.size)}
    dtypes = {"images": np.uint8, "masks": np.uint8, INSTANCE_PART: np.int32}
    temps = {part: folder / f".{part}.npy.tmp" for part in parts}
    try:
        arrays = {part: np.lib.format.open_memmap(temps[part], mode="w+", dtype=dtypes[part], shape=shapes[part])
                  for part in parts}
        decode_into(arrays["images"], arrays["masks"], samples, config, num_classes, desc, arrays.get(INSTANCE_PART))
        hashes = {}
        for part, array in arrays.items():
            array.flush()
            with open(temps[part], "rb+") as handle:
                os.fsync(handle.fileno())
            hashes[part] = file_sha256(temps[part])
            os.replace(temps[part], folder / f"{part}.npy")
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    atomic_write_json(folder / "meta.json", {**hashes, "samples": n, "image_size": config.image_size, "resize": config.resize})
    log.info("%s: decoded %d files once into %s", desc, n, folder)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
