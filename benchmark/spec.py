"""The run spec: everything that determines one cell's numbers, plus where to work.

A spec is checked here (:func:`check`) before any work, so bad input fails with one line;
where its files go (models, evaluations, results, figures) is derived from it here too.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One cell of the benchmark: everything that determines its numbers, plus where to work."""

    attack: str = "fine_grained"
    defense: str = "none"
    model: str = "unet"
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense_params: dict[str, Any] = field(default_factory=dict)
    poison_rate: float | None = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    clean_fraction: float = 0.05
    seed: int = 0
    device: str = "auto"
    workdir: str = "runs"
    init_weights: str | None = None
    """A local safetensors (or weights-only torch) file the model starts from, e.g. a pretrained encoder."""
    encoder: str | None = None
    """The model's encoder instead of its zoo entry's (any smp encoder, ``tu-<timm model>``)."""
    encoder_weights: str | None = None
    """Pretrained encoder weights the model library downloads itself (``imagenet``); None: random."""
    results_dir: str | None = None
    """Where finished cells' JSON files go; default ``WORKDIR/results``."""
    eval_batch_size: int = 64


def check(spec: RunSpec) -> None:
    """Fail with one line, before any work, on settings no cell could run with."""
    if not 0 < spec.clean_fraction < 1:
        raise BenchmarkError(f"--clean-fraction must be in (0, 1), got {spec.clean_fraction}")
    if spec.eval_batch_size < 1:
        raise BenchmarkError(f"--eval-batch-size must be >= 1, got {spec.eval_batch_size}")
    check_writable(Path(spec.workdir), "workdir")
    check_writable(results_folder(spec), "results folder")
    entry = models.registry.get(spec.model)  # unknown names fail before any work
    models.check_encoder(spec.model, spec.encoder, spec.encoder_weights)
    defaults = TrainConfig()
    if spec.train.aux_weight != defaults.aux_weight and not entry.aux_head:
        warn_once(f"--aux-weight has no effect on {spec.model} (it has no auxiliary head); "
                  "it is left out of the model's key")
    if spec.train.momentum != defaults.momentum and spec.train.optimizer != "sgd":
        warn_once(f"--momentum has no effect with --optimizer {spec.train.optimizer} (SGD only); "
                  "it is left out of the model's key")


@functools.lru_cache(maxsize=None)
def warn_once(message: str) -> None:
    """A warning about a setting, once per process however many cells share it."""
    log.warning(message)


def check_sizes(spec: RunSpec, image_size: tuple[int, int]) -> None:
    """Image and crop sizes the model's architecture takes; a crop that fits in the image."""
    models.check_image_size(spec.model, *image_size)
    crop = spec.train.crop_size
    if crop is not None:
        if crop[0] > image_size[0] or crop[1] > image_size[1]:
            raise BenchmarkError(f"--crop-size {crop[0]}x{crop[1]} is larger than the images "
                                 f"({image_size[0]}x{image_size[1]}); give at most the image size")
        models.check_image_size(spec.model, *crop, what="crop")


def check_writable(folder: Path, what: str) -> None:
    """Fail before any work, not after hours of training, when ``folder`` cannot hold files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = "it is a file" if folder.is_file() else error.strerror or str(error)
        raise BenchmarkError(f"{what} {str(folder)!r} cannot be written: {reason}") from None


def results_folder(spec: RunSpec) -> Path:
    return Path(spec.results_dir) if spec.results_dir else Path(spec.workdir) / "results"


def result_path(spec: RunSpec, key: str) -> Path:
    return results_folder(spec) / f"{key}.json"


def figures_folder(spec: RunSpec) -> Path:
    """Figures live beside the results folder, where the leaderboard links them."""
    return results_folder(spec).parent / "figures"


def lock_path(spec: RunSpec, key: str) -> Path:
    return Path(spec.workdir) / "locks" / f"{key}.lock"
