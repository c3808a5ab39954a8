"""Datasets: tensors in memory, one registry, built by name.

A dataset is two :class:`Split` s of ``uint8`` images ``[N,3,H,W]`` and ``int64`` masks
``[N,H,W]`` (``IGNORE_INDEX`` marks unlabelled pixels) plus its class names. Keeping whole
splits as tensors lets triggers, label rules and batching run as tensor ops on the device,
with no data-loader copies. Indexing a split yields ``(float32 image in [0,1], mask)``.

Register a new dataset with ``@datasets.register("name")`` on a function
``(config: DatasetConfig) -> SegmentationDataset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry

IGNORE_INDEX = 255


@dataclass
class Split:
    """One split held as tensors; ``instances`` (int32, 0 = no instance) where known."""

    images: torch.Tensor
    masks: torch.Tensor
    instances: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise BenchmarkError(f"split images must be uint8 [N,3,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.masks.shape != (self.images.shape[0], *self.images.shape[2:]):
            raise BenchmarkError(f"split masks {tuple(self.masks.shape)} do not match images {tuple(self.images.shape)}")
        self.masks = self.masks.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float() / 255.0, self.masks[index]

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
    read from disk, the most to load (``None`` = all). Images from disk are resized to
    ``image_size`` x ``image_size`` (bilinear; masks nearest).
    """

    name: str = "synthetic"
    root: str | None = None
    image_size: int = 64
    train_size: int | None = None
    test_size: int | None = None
    seed: int = 0


registry: Registry = Registry("dataset")
register = registry.register


def build(config: DatasetConfig) -> SegmentationDataset:
    """Build the dataset named by ``config.name``."""
    if config.image_size < 8:
        raise BenchmarkError(f"image size must be at least 8, got {config.image_size}")
    if config.root is not None and not Path(config.root).is_dir():
        raise BenchmarkError(f"dataset folder {config.root!r} does not exist")
    return registry.get(config.name)(config)


from benchmark.datasets import folders, synthetic  # noqa: E402,F401  (registers built-ins)
