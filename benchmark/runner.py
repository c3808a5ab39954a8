"""``run(spec) -> result``: train (or reuse), attack, defend and evaluate one cell.

A trained model is an artifact keyed by the hash of everything that determines it (dataset,
model, attack and its parameters, training config, seed), so every defense and every later
run reuses it; the clean baseline of a (dataset, model, seed) is trained once for all
attacks. A finished cell's result is a JSON file keyed the same way and is never recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import models
from attacks import Attack
from benchmark import datasets, distributed, metrics, retrain
from benchmark.datasets import DatasetConfig, SegmentationDataset
from benchmark.engine import TrainConfig, TrainStats, resolve_device, seed_everything, train
from benchmark.errors import BenchmarkError
from benchmark.evaluate import Evaluation, evaluate
from benchmark.poisoning import check_instances, poison_rows, scene_of, select_budget, select_poison
from benchmark.store import atomic_write_json, content_key, file_lock, load_model, read_json, save_model
from defenses import CleanBudget, Defense
from defenses.base import ModelPredictor

log = logging.getLogger(__name__)

ARTIFACT_VERSION = 2
"""2: poisoned images and clean budget drawn from streams apart from the training shuffle."""


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


@dataclass
class Counters:
    """How many models a run trained and how many it reused (for the grid's log)."""

    trained: int = 0
    reused: int = 0


counters = Counters()


def load_dataset(spec: RunSpec) -> SegmentationDataset:
    """The cell's dataset; files read from disk are decoded once into ``WORKDIR/datasets``."""
    cache_dir = spec.dataset.cache_dir or str(Path(spec.workdir) / "datasets")
    return build_dataset(dataclasses.replace(spec.dataset, cache_dir=cache_dir))


@functools.lru_cache(maxsize=4)
def build_dataset(config: DatasetConfig) -> SegmentationDataset:
    start = time.perf_counter()
    data = datasets.build(config)
    log.info("dataset %s: %d train / %d test images of %dx%d, %d classes (%.1fs)", config.name,
             len(data.train), len(data.test), *data.image_size, data.num_classes, time.perf_counter() - start)
    return data


def make_attack(spec: RunSpec, data: SegmentationDataset) -> Attack:
    """The attack of ``spec`` (the dataset's suggested parameters, overridden by the user's),
    checked on a few training images so that a bad parameter fails now with one line, not
    after the clean model has trained."""
    attack_class = Attack.registry.get(spec.attack)
    fields = {f.name for f in attack_class.parameters()}
    suggested = data.attack_defaults if attack_class.dataset_defaults else {}
    params = {k: v for k, v in suggested.items() if k in fields} | spec.attack_params
    if spec.poison_rate is not None:
        if "poison_rate" in params and float(params["poison_rate"]) != spec.poison_rate:
            raise BenchmarkError("poison rate given twice (--poison-rate and --attack-param poison_rate)")
        params["poison_rate"] = spec.poison_rate
    attack = attack_class.create(params, class_names=data.class_names)
    check_instances(attack, data)
    images, masks = data.train.images[:2].float() / 255, data.train.masks[:2].long()
    scene = scene_of(attack, data.train.instances, slice(0, 2))
    try:
        attack.trigger(images, masks, **scene), attack.poison_label(masks, **scene)
        attack.attack_region(masks, **scene), attack.eligible(masks, **scene)
    except (ValueError, KeyError, IndexError) as error:
        raise BenchmarkError(f"attack {spec.attack}: {error}") from error
    return attack


def make_defense(spec: RunSpec) -> Defense:
    return Defense.registry.get(spec.defense).create(spec.defense_params)


def model_description(spec: RunSpec, attack: Attack | None) -> dict:
    """Everything that determines a trained model; its hash is the artifact key."""
    description = {
        "version": ARTIFACT_VERSION,
        "dataset": spec.dataset.key(),
        "model": spec.model,
        "attack": None if attack is None else {"name": attack.name, "params": attack.key_params()},
        "train": spec.train.key(),
        "seed": spec.seed,
    }
    description.update(model_options(spec))
    if spec.init_weights is not None:
        description["init_weights"] = file_digest(spec.init_weights)
    return description


def model_options(spec: RunSpec) -> dict[str, str]:
    """The encoder and its pretrained weights where they differ from the zoo entry's defaults
    (left out otherwise, so the keys of models trained before these options existed hold)."""
    options = {}
    if spec.encoder is not None and spec.encoder != models.registry.get(spec.model).encoder:
        options["encoder"] = spec.encoder
    if spec.encoder_weights is not None:
        options["encoder_weights"] = spec.encoder_weights
    return options


def build_model(spec: RunSpec, num_classes: int, image_size: tuple[int, int]) -> torch.nn.Module:
    """The zoo model of ``spec``, checked against the sizes it will see (its encoder may need
    other multiples than the entry's default one)."""
    model = models.build(spec.model, num_classes, weights=spec.init_weights, encoder=spec.encoder,
                         encoder_weights=spec.encoder_weights)
    models.check_image_size(spec.model, *image_size, model=model)
    if spec.train.crop_size is not None:
        models.check_image_size(spec.model, *spec.train.crop_size, model=model, what="crop")
    return model


def check_sizes(spec: RunSpec, image_size: tuple[int, int]) -> None:
    """Image and crop sizes the model's architecture takes; a crop that fits in the image."""
    models.check_image_size(spec.model, *image_size)
    crop = spec.train.crop_size
    if crop is not None:
        if crop[0] > image_size[0] or crop[1] > image_size[1]:
            raise BenchmarkError(f"--crop-size {crop[0]}x{crop[1]} is larger than the images "
                                 f"({image_size[0]}x{image_size[1]}); give at most the image size")
        models.check_image_size(spec.model, *crop, what="crop")


def trained_model(spec: RunSpec, data: SegmentationDataset, attack: Attack | None,
                  device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model trained on ``data`` poisoned by ``attack`` (clean if None), from cache if there."""
    description = model_description(spec, attack)
    key = content_key(description)
    path = model_path(spec, attack)
    label = f"{spec.model}{'/' + spec.encoder if spec.encoder else ''}/{attack.name if attack else 'clean'}/seed{spec.seed}"
    seed_everything(spec.seed)
    model = build_model(spec, data.num_classes, data.image_size)
    with file_lock(path.with_suffix(".lock")):
        sidecar = load_model(path, model)
        if sidecar is not None:
            counters.reused += 1
            log.info("reusing trained model %s (%s)", label, key)
            return model.to(device=device, memory_format=torch.channels_last), sidecar
        with distributed.shared_training(spec, attack is not None):  # torchrun: every rank trains it
            poisoned, stats = train_model(spec, data, attack, device, model)
        sidecar = {
            "key": key, "description": description, "poisoned_images": len(poisoned),
            "train_seconds": stats.seconds, "train_images_per_second": stats.images_per_second,
            "final_loss": stats.final_loss, "device": str(device),
        }
        save_model(path, model, sidecar)
        counters.trained += 1
        return model, sidecar


def model_path(spec: RunSpec, attack: Attack | None) -> Path:
    """Where the model trained with ``attack`` (None: the clean baseline) is stored."""
    return Path(spec.workdir) / "models" / f"{content_key(model_description(spec, attack))}.safetensors"


def train_model(spec: RunSpec, data: SegmentationDataset, attack: Attack | None, device: torch.device,
                model: torch.nn.Module) -> tuple[torch.Tensor, TrainStats]:
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
                  workers=spec.dataset.workers)
    return poisoned, stats


def model_evaluation(spec: RunSpec, data: SegmentationDataset, trained_with: Attack | None, attack: Attack,
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
    key = content_key({"model": model_description(spec, trained_with), "attack": attack.name,
                       "attack_params": attack.key_params()})
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


def clean_budget(spec: RunSpec, data: SegmentationDataset, attack: Attack, device: torch.device) -> CleanBudget:
    """The defender's budget: copies of clean training images that were not poisoned."""
    poisoned = select_poison(attack, data.train.masks, spec.seed, data.train.instances)
    index = select_budget(len(data.train), poisoned, spec.clean_fraction, spec.seed + 1)
    return CleanBudget(data.train.images[index].clone(), data.train.masks[index].long(),
                       data.class_names, device, spec.train.batch_size)


def cell_key(spec: RunSpec, attack: Attack, defense: Defense) -> str:
    return content_key({
        "model": model_description(spec, attack),
        "defense": {"name": defense.name, "params": defense.key_params()},
        "clean_fraction": spec.clean_fraction,
    })


def result_path(spec: RunSpec, key: str) -> Path:
    return results_folder(spec) / f"{key}.json"


def results_folder(spec: RunSpec) -> Path:
    return Path(spec.results_dir) if spec.results_dir else Path(spec.workdir) / "results"


def figures_folder(spec: RunSpec) -> Path:
    """Figures live beside the results folder, where the leaderboard links them."""
    return results_folder(spec).parent / "figures"


def run(spec: RunSpec) -> dict:
    """Run one cell and return its result record (from the results store if finished).

    The cell is locked while it runs: a second process on the same workdir waits, then reuses
    the result instead of computing it again.
    """
    device = resolve_device(spec.device)
    data, attack, defense, key = prepare(spec)
    with file_lock(Path(spec.workdir) / "locks" / f"{key}.lock"):
        finished = finished_result(spec, key)
        if finished is not None:
            log.info("cell %s/%s/%s already finished; reusing its result", spec.model, attack.name, defense.name)
            return finished
        result = compute_cell(spec, data, attack, defense, device, key)
        atomic_write_json(result_path(spec, key), result)
        return result


def prepare(spec: RunSpec) -> tuple[SegmentationDataset, Attack, Defense, str]:
    """Check ``spec`` and build its cell's dataset, attack, defense and key: bad input fails
    here with one line, before any work."""
    if not 0 < spec.clean_fraction < 1:
        raise BenchmarkError(f"--clean-fraction must be in (0, 1), got {spec.clean_fraction}")
    if spec.eval_batch_size < 1:
        raise BenchmarkError(f"--eval-batch-size must be >= 1, got {spec.eval_batch_size}")
    check_writable(Path(spec.workdir), "workdir")
    check_writable(results_folder(spec), "results folder")
    models.registry.get(spec.model)  # unknown names fail before any work
    models.check_encoder(spec.model, spec.encoder, spec.encoder_weights)
    data = load_dataset(spec)
    check_sizes(spec, data.image_size)
    attack = make_attack(spec, data)
    defense = make_defense(spec)
    return data, attack, defense, cell_key(spec, attack, defense)


def check_writable(folder: Path, what: str) -> None:
    """Fail before any work, not after hours of training, when ``folder`` cannot hold files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = "it is a file" if folder.is_file() else error.strerror or str(error)
        raise BenchmarkError(f"{what} {str(folder)!r} cannot be written: {reason}") from None


def finished_result(spec: RunSpec, key: str) -> dict | None:
    """The stored result of cell ``key``; a file that is not that cell's record is recomputed."""
    path = result_path(spec, key)
    result = read_json(path)
    if result is not None and result.get("cell") != key:
        log.warning("ignoring %s: not the result of cell %s; it will be recomputed", path, key)
        return None
    return result


def compute_cell(spec: RunSpec, data: SegmentationDataset, attack: Attack, defense: Defense,
                 device: torch.device, key: str) -> dict:
    """Train (or reuse) the models, fit the defense and evaluate: the result record of a cell."""
    baseline = model_evaluation(spec, data, None, attack, device)
    attacked_model, sidecar = trained_model(spec, data, attack, device)
    before = model_evaluation(spec, data, attack, attack, device, attacked_model)

    budget = clean_budget(spec, data, attack, device)
    start = time.perf_counter()
    if retrain.is_training_time(defense):  # given the poisoned training set, not the budget
        defended_model, training_time = retrain.defend(model_description(spec, attack), spec, data, attack,
                                                       defense, attacked_model, device)
        predictor = ModelPredictor(defended_model)
    else:
        predictor, training_time = defense.fit(attacked_model, budget), {}
    defense_seconds = time.perf_counter() - start
    if isinstance(predictor, ModelPredictor) and predictor.model is attacked_model:
        after = before  # the defense left the model as it was: its evaluation is the undefended one
    else:
        after = evaluate(predictor, data.test, attack, data.num_classes, device, spec.eval_batch_size,
                         desc=f"evaluate {defense.name}")
    eval_seconds = time.perf_counter() - start - defense_seconds

    result = {
        "dataset": spec.dataset.name, "model": spec.model, "attack": attack.name, "defense": defense.name,
        "poison_rate": attack.poison_rate, "seed": spec.seed, "num_classes": data.num_classes,
        "class_names": list(data.class_names), "image_size": size_label(data.image_size),
        "train_images": len(data.train), "test_images": len(data.test),
        "batch_size": spec.train.batch_size, "epochs": spec.train.epochs, "lr": spec.train.lr,
        "clean_fraction": spec.clean_fraction,
        "clean_miou": before.clean_miou, "asr": before.asr, "pba": before.pba,
        "baseline_asr": baseline.asr, "baseline_clean_miou": baseline.clean_miou,
        "post_clean_miou": after.clean_miou, "post_asr": after.asr, "post_pba": after.pba,
        "der": metrics.defense_effectiveness_rating(before.asr, after.asr, before.clean_miou, after.clean_miou),
        "per_class_iou": before.per_class_iou, "post_per_class_iou": after.per_class_iou,
        "poisoned_images": sidecar["poisoned_images"], "clean_budget_images": len(budget),
        "train_seconds": sidecar["train_seconds"],
        "train_images_per_second": sidecar["train_images_per_second"],
        "defense_seconds": defense_seconds, "eval_seconds": eval_seconds,
        "attack_params": attack.params(), "defense_params": defense.params(),
        **legacy_records(attack, defense),
        "defense_report": defense.report,
        "device": str(device), "hardware": hardware_description(device),
        "versions": package_versions(), "artifact": sidecar["key"], "cell": key,
    }
    result.update(detection_metrics(after, predictor))
    if before.collateral_asr is not None:  # attacks with a control region (conditional, instance-level)
        result.update(collateral_asr=before.collateral_asr, post_collateral_asr=after.collateral_asr,
                      baseline_collateral_asr=baseline.collateral_asr)
    result.update(training_time)
    return json_safe(result)


def legacy_records(attack: Attack, defense: Defense) -> dict:
    """The plugins' legacy parameter values (``Plugin.added``), where they have any: the
    leaderboard labels records that predate a parameter with them."""
    records = {"attack_legacy_params": attack.legacy_params(), "defense_legacy_params": defense.legacy_params()}
    return {key: values for key, values in records.items() if values}


def size_label(size: tuple[int, int]) -> int | str:
    """A square side as a number (as records always had it), else ``HEIGHTxWIDTH``."""
    return size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"


def detection_metrics(after: Evaluation, predictor: Any) -> dict:
    """AUROC on the continuous score; TPR at thresholds chosen on clean budget scores only."""
    if after.clean_scores is None:
        return {}
    scores = torch.cat([after.clean_scores, after.triggered_scores])
    labels = torch.cat([torch.zeros(len(after.clean_scores)), torch.ones(len(after.triggered_scores))])
    calibration = predictor.calibration_scores
    return {
        "detection_auroc": metrics.auroc(scores, labels),
        "tpr_at_1fpr": metrics.true_positive_rate(after.triggered_scores, metrics.threshold_at_fpr(calibration, 0.01)),
        "tpr_at_5fpr": metrics.true_positive_rate(after.triggered_scores, metrics.threshold_at_fpr(calibration, 0.05)),
        "false_rejection_rate": after.clean_rejection_rate,
        "triggered_rejection_rate": after.triggered_rejection_rate,
    }


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def package_versions() -> dict[str, str]:
    import segmentation_models_pytorch
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "smp": segmentation_models_pytorch.__version__}


@functools.lru_cache(maxsize=8)
def file_digest(path: str) -> str:
    """Content hash of a weights file, so an artifact key changes when the file does (read
    once per process: every key of a cell is derived from it)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError as error:
        raise BenchmarkError(f"weights file {path!r} cannot be read: {error.strerror}") from None


def json_safe(value: Any) -> Any:
    """NaN (an undefined metric, e.g. ASR with an empty attack region) becomes null in JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
