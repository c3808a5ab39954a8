"""Artifacts: trained models and their undefended evaluations, built once and cached.

A trained model is keyed by the hash of everything that determines it (dataset, model, attack
and its parameters, training config, seed), so every defense and every later run reuses it;
the clean baseline of a (dataset, model, seed) is trained once for all attacks. The runner,
the retraining harness, the Ray tasks and the torchrun follower all get their models here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

import models
from attacks import Attack
from benchmark import distributed
from benchmark.datasets import SegmentationDataset
from benchmark.engine import Parallel, TrainStats, seed_everything, train
from benchmark.errors import BenchmarkError
from benchmark.evaluate import Evaluation, evaluate
from benchmark.poisoning import poison_rows, select_poison
from benchmark.spec import RunSpec
from benchmark.store import atomic_write_json, content_key, file_lock, json_safe, load_model, read_json, save_model
from defenses import Defense
from defenses.base import ModelPredictor

log = logging.getLogger(__name__)

ARTIFACT_VERSION = 2
"""2: poisoned images and clean budget drawn from streams apart from the training shuffle."""
EVALUATION_VERSION = 2
"""2: PBA over the attack's benign region (undefined for whole-map rules; it scored image_level's
target pixels before)."""


@dataclass
class Counters:
    """How many models a run trained and reused, and how many finished cells it reused (for
    the grid's closing log line)."""

    trained: int = 0
    reused: int = 0
    finished_cells: int = 0


counters = Counters()


def model_description(spec: RunSpec, attack: Attack | None) -> dict:
    """Everything that determines a trained model; its hash is the artifact key."""
    description = {
        "version": ARTIFACT_VERSION,
        "dataset": spec.dataset.key(),
        "model": spec.model,
        "attack": None if attack is None else {"name": attack.name, "params": attack.key_params()},
        "train": train_key(spec),
        "seed": spec.seed,
    }
    description.update(model_options(spec))
    if spec.init_weights is not None:
        description["init_weights"] = file_digest(spec.init_weights)
    return description


def train_key(spec: RunSpec) -> dict:
    """The training config's key, less ``aux_weight`` for a model without an auxiliary head
    (where it cannot act, so the same model is trained whatever it holds)."""
    key = spec.train.key()
    if not models.registry.get(spec.model).aux_head:
        key.pop("aux_weight", None)
    return key


def model_options(spec: RunSpec) -> dict[str, str]:
    """The encoder and its pretrained weights where they differ from the zoo entry's defaults
    (left out otherwise, so the keys of models trained before these options existed hold)."""
    options = {}
    if spec.encoder is not None and spec.encoder != models.registry.get(spec.model).encoder:
        options["encoder"] = spec.encoder
    if spec.encoder_weights is not None:
        options["encoder_weights"] = spec.encoder_weights
    return options


@functools.lru_cache(maxsize=8)
def file_digest(path: str) -> str:
    """Content hash of a weights file, so an artifact key changes when the file does (read
    once per process: every key of a cell is derived from it)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as error:
        raise BenchmarkError(f"weights file {path!r} cannot be read: {error.strerror}") from None


def cell_key(spec: RunSpec, attack: Attack, defense: Defense) -> str:
    """The key of a cell's result: its attacked model, the defense and the defender's budget."""
    return content_key({
        "model": model_description(spec, attack),
        "defense": {"name": defense.name, "params": defense.key_params()},
        "clean_fraction": spec.clean_fraction,
    })


def build_model(spec: RunSpec, num_classes: int, image_size: tuple[int, int]) -> torch.nn.Module:
    """The zoo model of ``spec``, checked against the sizes it will see (its encoder may need
    other multiples than the entry's default one)."""
    model = models.build(spec.model, num_classes, weights=spec.init_weights, encoder=spec.encoder,
                         encoder_weights=spec.encoder_weights)
    models.check_image_size(spec.model, *image_size, model=model)
    if spec.train.crop_size is not None:
        models.check_image_size(spec.model, *spec.train.crop_size, model=model, what="crop")
    return model


def model_path(spec: RunSpec, attack: Attack | None) -> Path:
    """Where the model trained with ``attack`` (None: the clean baseline) is stored."""
    return Path(spec.workdir) / "models" / f"{content_key(model_description(spec, attack))}.safetensors"


def trained_model(spec: RunSpec, data: SegmentationDataset, attack: Attack | None,
                  device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model trained on ``data`` poisoned by ``attack`` (clean if None), from cache if there."""
    description = model_description(spec, attack)
    key = content_key(description)
    path = model_path(spec, attack)
    label = f"{spec.model}{'/' + spec.encoder if spec.encoder else ''}/{attack.name if attack else 'clean'}/seed{spec.seed}"
    seed_everything(spec.seed)
    model = build_model(spec, data.num_classes, data.image_size)
    with file_lock(path.with_suffix(".lock"), f"model {label}"):
        sidecar = load_model(path, model)
        if sidecar is not None:
            counters.reused += 1
            log.info("reusing trained model %s (%s)", label, key)
            return model.to(device=device, memory_format=torch.channels_last), sidecar
        with distributed.shared_training(spec, attack is not None) as parallel:  # torchrun: every rank trains it
            poisoned, stats = train_model(spec, data, attack, device, model, parallel)
        sidecar = {
            "key": key, "description": description, "poisoned_images": len(poisoned),
            "train_seconds": stats.seconds, "train_images_per_second": stats.images_per_second,
            "final_loss": stats.final_loss, "device": str(device),
        }
        save_model(path, model, sidecar)
        counters.trained += 1
        return model, sidecar


def train_model(spec: RunSpec, data: SegmentationDataset, attack: Attack | None, device: torch.device,
                model: torch.nn.Module, parallel: Parallel | None = None) -> tuple[torch.Tensor, TrainStats]:
    """Train ``model`` in place on ``data`` poisoned by ``attack`` (clean if None), with no cache:
    the poisoned training images and the training's statistics."""
    label = f"{spec.model}/{attack.name if attack else 'clean'}/seed{spec.seed}"
    poisoned, rows = torch.empty(0, dtype=torch.long), None
    if attack is not None:
        poisoned = select_poison(attack, data.train.masks, spec.seed, data.train.instances)
        rows = poison_rows(attack, data.train, poisoned, device) if len(poisoned) else None
        log.info("%s: poisoned %d of %d training images", label, len(poisoned), len(data.train))
    stats = train(model, data.train.images, data.train.masks, spec.train, device, spec.seed,
                  desc=f"train {label}", transform=rows, stream=data.train.streamed,
                  workers=spec.dataset.workers, parallel=parallel)
    return poisoned, stats


def evaluation(spec: RunSpec, data: SegmentationDataset, trained_with: Attack | None, attack: Attack,
               device: torch.device, model: torch.nn.Module | None = None) -> Evaluation:
    """The undefended evaluation of the model trained with ``trained_with`` (None: the clean
    model) against ``attack``; cached, so adding a defense to a grid costs only the defense."""
    path = evaluation_path(spec, trained_with, attack)
    cached = cached_evaluation(path)
    if cached is not None:
        return cached
    if model is None:
        model, _ = trained_model(spec, data, trained_with, device)
    which = "attacked" if trained_with is not None else "clean"
    result = evaluate(ModelPredictor(model), data.test, attack, data.num_classes, device,
                      spec.eval_batch_size, desc=f"evaluate {which} model")
    record = {"clean_miou": result.clean_miou, "asr": result.asr, "pba": result.pba,
              "per_class_iou": result.per_class_iou}
    if result.collateral_asr is not None:
        record["collateral_asr"] = result.collateral_asr
    atomic_write_json(path, json_safe(record))
    return result


def evaluation_path(spec: RunSpec, trained_with: Attack | None, attack: Attack) -> Path:
    """Where the undefended evaluation of the model trained with ``trained_with`` against ``attack`` is stored."""
    key = content_key({"version": EVALUATION_VERSION, "model": model_description(spec, trained_with),
                       "attack": attack.name, "attack_params": attack.key_params()})
    return Path(spec.workdir) / "evaluations" / f"{key}.json"


EVALUATION_KEYS = {"clean_miou", "asr", "pba", "per_class_iou"}


def cached_evaluation(path: Path) -> Evaluation | None:
    """A stored undefended evaluation, or None if absent or not one (then it is recomputed)."""
    cached = read_json(path)
    if cached is None:
        return None
    if not EVALUATION_KEYS <= set(cached) <= EVALUATION_KEYS | {"collateral_asr"}:
        log.warning("ignoring %s: not an evaluation record; it will be recomputed", path)
        return None
    return Evaluation(**{k: math.nan if v is None else v for k, v in cached.items()})  # null back to NaN
