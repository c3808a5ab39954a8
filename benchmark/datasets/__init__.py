"""Datasets: tensors in memory, one registry, built by name.

A dataset is two :class:`Split` s of ``uint8`` images ``[N,3,H,W]`` and integer masks
``[N,H,W]`` (``IGNORE_INDEX`` marks unlabelled pixels) plus its class names. Keeping whole
splits as tensors lets triggers, label rules and batching run as tensor ops on the device,
with no data-loader copies. Indexing a split yields ``(float32 image in [0,1], int64 mask)``.

Sets too large for memory are *streamed*: their splits are memory-mapped from the decode
cache (``benchmark.datasets.decode``) and training reads batches through a DataLoader with
worker processes and pinned memory instead of moving the whole split to the device.

Register a new dataset with ``@datasets.register("name")`` on a function
``(config: DatasetConfig) -> SegmentationDataset``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry

log = logging.getLogger(__name__)

IGNORE_INDEX = 255


@dataclass
class Split:
    """One split held as tensors; ``instances`` (int32, 0 = no instance) where known.

    Masks are ``int64``, or ``uint8`` for splits read from disk (an eighth of the memory);
    consumers take ``.long()`` per batch. ``streamed`` splits stay on the host (usually
    memory-mapped) and are fed to training by a DataLoader rather than moved to the device.
    """

    images: torch.Tensor
    masks: torch.Tensor
    instances: torch.Tensor | None = None
    streamed: bool = False

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise BenchmarkError(f"split images must be uint8 [N,3,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.masks.shape != (self.images.shape[0], *self.images.shape[2:]):
            raise BenchmarkError(f"split masks {tuple(self.masks.shape)} do not match images {tuple(self.images.shape)}")
        if self.masks.dtype not in (torch.uint8, torch.int64):
            self.masks = self.masks.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float() / 255.0, self.masks[index].long()

    def subset(self, indices: torch.Tensor) -> "Split":
        instances = None if self.instances is None else self.instances[indices]
        return Split(self.images[indices], self.masks[indices], instances)


@dataclass
class SegmentationDataset:
    name: str
    class_names: tuple[str, ...]
    train: Split
    test: Split
    ignore_index: int = IGNORE_INDEX
    attack_defaults: dict[str, Any] = field(default_factory=dict)
    """Attack parameters that suit this dataset (e.g. ``victims=("person",)``); the user's
    ``--attack-param`` values override them and attacks without such a field ignore them."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.images.shape[2:])  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetConfig:
    """Everything that determines a dataset's tensors (part of every artifact key).

    ``train_size`` / ``test_size``: how many images to generate (synthetic) or, for datasets
    read from disk, the most to load (``None`` = all). ``image_size`` is a side (square
    images) or ``(height, width)``; a square pair is stored as its side, so keys made before
    non-square sizes existed hold. Images from disk are brought to that size by ``resize``:
    ``stretch`` (bilinear, masks nearest) or ``crop`` (scaled to cover it, then the centre).

    ``loading``, ``workers`` and ``cache_dir`` say only *how* the tensors are obtained, never
    what they are, so they are left out of :meth:`key`.
    """

    name: str = "synthetic"
    root: str | None = None
    image_size: int | tuple[int, int] = 64
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0
    resize: str = "stretch"
    loading: str = "auto"
    """``memory`` (whole splits in RAM / on the device), ``stream`` (memory-mapped, read by a
    DataLoader) or ``auto`` (stream when the decoded set would take over half the free RAM)."""
    workers: int = field(default_factory=lambda: min(4, (os.cpu_count() or 1) - 1))
    """DataLoader worker processes for decoding files and for streaming batches (0 = in-process);
    one core is left to the training process."""
    cache_dir: str | None = None
    """Where decoded datasets read from disk are cached (the runner uses ``WORKDIR/datasets``)."""

    def __post_init__(self) -> None:
        if isinstance(self.image_size, (tuple, list)):
            height, width = self.image_size
            object.__setattr__(self, "image_size", height if height == width else (height, width))
        if min(self.size) < 8:
            shown = self.image_size if isinstance(self.image_size, int) else "x".join(map(str, self.image_size))
            raise BenchmarkError(f"image size must be at least 8, got {shown}")
        for flag, count in (("--train-size", self.train_size), ("--test-size", self.test_size)):
            if count is not None and count < 1:
                raise BenchmarkError(f"{flag} must be at least 1, got {count}")
        if self.resize not in RESIZE_MODES:
            raise BenchmarkError(f"--resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.loading not in LOADING_MODES:
            raise BenchmarkError(f"--loading must be one of {', '.join(LOADING_MODES)}, got {self.loading!r}")
        if self.workers < 0:
            raise BenchmarkError(f"--workers must be >= 0, got {self.workers}")

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of every image."""
        return (self.image_size, self.image_size) if isinstance(self.image_size, int) else self.image_size

    def key(self) -> dict[str, Any]:
        """What determines the tensors (part of every artifact key). ``resize`` came after
        the first artifacts, so it is left out at its default and their keys stay valid."""
        key = {k: v for k, v in asdict(self).items() if k not in ("loading", "workers", "cache_dir")}
        if self.resize == "stretch":
            del key["resize"]
        return key


RESIZE_MODES = ("stretch", "crop")
LOADING_MODES = ("auto", "memory", "stream")


def should_stream(config: DatasetConfig, num_bytes: int) -> bool:
    """Whether a set of ``num_bytes`` decoded bytes is streamed rather than held in memory."""
    if config.loading != "auto":
        return config.loading == "stream"
    return num_bytes > available_memory() // 2


def available_memory() -> int:
    """Bytes free for new data: the kernel's MemAvailable, and no more than the GPU's free
    memory when CUDA is present (a set held "in memory" is moved whole to the device)."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        free = int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024
    except (OSError, IndexError, ValueError):
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if torch.cuda.is_available():
        free = min(free, torch.cuda.mem_get_info()[0])
    return free


registry: Registry = Registry("dataset")
register = registry.register


def load(config: DatasetConfig, workdir: str) -> SegmentationDataset:
    """The dataset of ``config``, built once per process; files read from disk are decoded
    once into ``WORKDIR/datasets`` (unless ``config.cache_dir`` says elsewhere)."""
    return _built(dataclasses.replace(config, cache_dir=config.cache_dir or str(Path(workdir) / "datasets")))


@functools.lru_cache(maxsize=4)
def _built(config: DatasetConfig) -> SegmentationDataset:
    start = time.perf_counter()
    data = build(config)
    log.info("dataset %s: %d train / %d test images of %dx%d, %d classes (%.1fs)", config.name,
             len(data.train), len(data.test), *data.image_size, data.num_classes, time.perf_counter() - start)
    return data


def build(config: DatasetConfig) -> SegmentationDataset:
    """Build the dataset named by ``config.name``; generated splits are streamed only when
    ``loading`` asks for it (they were made in memory, so ``auto`` keeps them there)."""
    if config.root is not None and not Path(config.root).is_dir():
        raise BenchmarkError(f"dataset folder {config.root!r} does not exist")
    data = registry.get(config.name)(config)
    if config.loading == "stream":
        data.train.streamed = data.test.streamed = True
    return data


from benchmark.datasets import folders, synthetic  # noqa: E402,F401  (registers built-ins)
