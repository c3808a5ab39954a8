"""The harness side of training-time defenses (DESIGN section 3): poisoned-data detection and
secure training.

The defense is handed the poisoned training set exactly as the victim's training saw it (the
rows of ``benchmark.poisoning`` swapped in: triggered images, relabelled masks), never which
rows were poisoned. Then:

- a :class:`~defenses.training.DataFilterDefense` flags samples given the attacked model; the
  harness drops flagged images (image flags) or sets flagged segments' pixels to ignore
  (segment flags), retrains a fresh model with the victim's recipe and seed, and caches it as
  an artifact keyed by the attacked model's description plus the exact set of removed samples
  (two defenses that remove the same samples share one retraining);
- a :class:`~defenses.training.TrainingDefense` trains its own model, cached under the attacked
  model's description plus the defense and its parameters (with the samples it isolated).

The harness, not the defense, scores the flags against the hidden poison indicator. An image
sample is poisoned when the attack poisoned it. A segment (class ``k`` in image ``n`` of the
*poisoned* labels) is poisoned when image ``n`` was poisoned and the label rule changed some
pixel of it (a fine-grained attack poisons the target segment that swallowed the victims; an
image-level attack the one segment left); when the rule changed no pixel of a poisoned image
(a clean-label attack), all its segments count as poisoned.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Callable

import safetensors.torch
import torch
from torch import nn

from attacks import Attack
from benchmark import metrics
from benchmark.artifacts import build_model, model_description
from benchmark.datasets import IGNORE_INDEX, SegmentationDataset
from benchmark.engine import seed_everything, train
from benchmark.errors import BenchmarkError
from benchmark.poisoning import covers_among, poison_rows, select_poison
from benchmark.spec import RunSpec
from benchmark.store import atomic_write_bytes, content_key, file_lock, load_model, save_model
from defenses import Defense
from defenses.training import DataFilterDefense, Flags, PoisonedTrainingSet, TrainingDefense

log = logging.getLogger(__name__)


def is_training_time(defense: Defense) -> bool:
    return isinstance(defense, (DataFilterDefense, TrainingDefense))


def poisoned_training_set(spec: RunSpec, data: SegmentationDataset, attack: Attack,
                          device: torch.device) -> tuple[PoisonedTrainingSet, torch.Tensor, torch.Tensor]:
    """The training set as the victim received it (the run spec's), plus the hidden indicators
    (image ``[N]`` and segment ``[N, K]``) that only the harness keeps."""
    images, masks = data.train.images.clone(), data.train.masks.long().clone()
    original = masks.clone()
    poisoned = select_poison(attack, data.train.masks, spec.seed, data.train.instances)
    if len(poisoned):
        rows = poison_rows(attack, data.train, poisoned, device)
        images[poisoned], masks[poisoned] = rows.images.cpu(), rows.masks.cpu()
    dataset = PoisonedTrainingSet(images, masks, data.class_names, device,
                                  lambda: build_model(spec, data.num_classes, data.image_size),
                                  spec.train, spec.seed)
    image_truth = torch.zeros(len(masks), dtype=torch.bool)
    image_truth[poisoned[~covers_among(attack, data.train, poisoned)]] = True  # covers keep true labels: clean
    return dataset, image_truth, segment_truth(original, masks, image_truth, data.num_classes)


def segment_truth(original: torch.Tensor, poisoned_masks: torch.Tensor, image_truth: torch.Tensor,
                  num_classes: int) -> torch.Tensor:
    """``bool [N, K]``: which segments of the poisoned labels are poisoned (module docstring)."""
    labels = poisoned_masks.flatten(1)
    changed = (labels != original.flatten(1)) & image_truth.view(-1, 1) & (labels != IGNORE_INDEX)
    truth = torch.zeros(len(labels), num_classes + 1, dtype=torch.bool)
    truth.scatter_(1, labels.masked_fill(~changed, num_classes), True)
    unchanged = image_truth & ~changed.any(dim=1)
    labelled = labels.masked_fill(labels == IGNORE_INDEX, num_classes)
    present = torch.zeros_like(truth).scatter_(1, labelled, True)
    truth[unchanged] = present[unchanged]
    return truth[:, :-1]


def defend(spec: RunSpec, data: SegmentationDataset, attack: Attack, defense: Defense,
           attacked_model: nn.Module, device: torch.device) -> tuple[nn.Module, dict]:
    """Run a training-time defense; return the defended model and the numbers for the result."""
    description = model_description(spec, attack)
    dataset, image_truth, segments = poisoned_training_set(spec, data, attack, device)
    workdir = Path(spec.workdir)
    if isinstance(defense, DataFilterDefense):
        start = time.perf_counter()
        flags = checked(defense.flag(attacked_model, dataset), dataset, defense.name)
        flag_seconds = time.perf_counter() - start
        model, sidecar = filtered_retraining(description, workdir, dataset, flags, device)
        record = {"flag_seconds": flag_seconds, "retrain_seconds": sidecar["train_seconds"]}
    else:
        model, flags, sidecar = secure_training(description, workdir, dataset, defense)
        record = {"retrain_seconds": sidecar["train_seconds"]}
    if flags is not None:
        truth = image_truth if flags.level == "image" else segments
        record |= flag_metrics(flags, truth, None if flags.level == "image" else dataset.present())
    return model.to(device=device, memory_format=torch.channels_last), record


def checked(flags: Flags, dataset: PoisonedTrainingSet, name: str) -> Flags:
    shapes = [(len(dataset),), (len(dataset), dataset.num_classes)]
    if tuple(flags.scores.shape) not in shapes:
        raise BenchmarkError(f"{name}: flags of shape {tuple(flags.scores.shape)}; expected "
                             f"[{len(dataset)}] (images) or [{len(dataset)}, {dataset.num_classes}] (segments)")
    return Flags(flags.scores.detach().float().cpu(), flags.flagged.detach().bool().cpu())


def flag_metrics(flags: Flags, truth: torch.Tensor, present: torch.Tensor | None) -> dict:
    """AUROC of the flag scores, precision and recall of the flags, against the hidden truth.
    Only existing samples count (every image; the segments in ``present``)."""
    keep = torch.ones_like(truth) if present is None else present
    scores, flagged, truth = flags.scores[keep], flags.flagged[keep], truth[keep]
    hits = int((flagged & truth).sum())
    return {
        "poison_detection_level": flags.level,
        "poison_detection_auroc": metrics.auroc(scores.nan_to_num(nan=-torch.inf), truth),
        "poison_detection_precision": hits / int(flagged.sum()) if flagged.any() else float("nan"),
        "poison_detection_recall": hits / int(truth.sum()) if truth.any() else float("nan"),
        "flagged_samples": int(flagged.sum()), "poisoned_samples": int(truth.sum()), "samples": int(truth.numel()),
    }


def filtered_set(dataset: PoisonedTrainingSet, flags: Flags) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set without the flagged samples: images dropped, or segments set to ignore."""
    if flags.level == "image":
        keep = ~flags.flagged
        return dataset.images[keep], dataset.masks[keep]
    masks = dataset.masks.clone()
    labels = masks.masked_fill(masks == IGNORE_INDEX, dataset.num_classes)
    removed = torch.cat([flags.flagged, torch.zeros(len(masks), 1, dtype=torch.bool)], dim=1)
    drop = torch.gather(removed, 1, labels.flatten(1)).view_as(masks)
    masks = masks.masked_fill(drop, IGNORE_INDEX)
    # an image whose every segment was flagged has nothing left to learn from; kept, a batch of
    # such images (image-level poison is drawn in epoch 1's first batches) has an undefined loss
    keep = (masks != IGNORE_INDEX).flatten(1).any(dim=1)
    return dataset.images[keep], masks[keep]


def filtered_retraining(description: dict, workdir: Path, dataset: PoisonedTrainingSet, flags: Flags,
                        device: torch.device) -> tuple[nn.Module, dict]:
    removed = hashlib.sha256(flags.flagged.numpy().tobytes()).hexdigest()[:16]
    key = content_key({"model": description, "removed": {"level": flags.level, "samples": removed}})
    images, masks = filtered_set(dataset, flags)

    def fit(model: nn.Module) -> dict:
        log.info("retraining without %d flagged %s(s)", int(flags.flagged.sum()), flags.level)
        stats = train(model, images, masks, dataset.recipe, device, dataset.seed, desc="retrain filtered")
        return {"train_seconds": stats.seconds, "final_loss": stats.final_loss}

    return cached_model(workdir / "models" / f"{key}.safetensors", dataset, fit)


def secure_training(description: dict, workdir: Path, dataset: PoisonedTrainingSet,
                    defense: TrainingDefense) -> tuple[nn.Module, Flags | None, dict]:
    key = content_key({"model": description, "training_defense": {"name": defense.name, "params": defense.key_params()}})
    path = workdir / "models" / f"{key}.safetensors"
    flags_path = path.with_suffix(".flags.safetensors")

    def fit(model: nn.Module) -> dict:
        start = time.perf_counter()
        trained, flags = defense.train_model(dataset)
        model.load_state_dict(trained.state_dict())
        if flags is not None:  # written before the model, whose sidecar marks the artifact complete
            flags = checked(flags, dataset, defense.name)
            atomic_write_bytes(flags_path, safetensors.torch.save({"scores": flags.scores, "flagged": flags.flagged}))
        return {"train_seconds": time.perf_counter() - start, "defense_report": defense.report}

    model, sidecar = cached_model(path, dataset, fit)
    defense.report = sidecar.get("defense_report", {})
    if not flags_path.is_file():
        return model, None, sidecar
    stored = safetensors.torch.load(flags_path.read_bytes())
    return model, Flags(stored["scores"], stored["flagged"]), sidecar


def cached_model(path: Path, dataset: PoisonedTrainingSet, fit: Callable[[nn.Module], dict]) -> tuple[nn.Module, dict]:
    """The model at ``path`` if stored intact, else a fresh one fitted by ``fit`` and stored."""
    seed_everything(dataset.seed)
    model = dataset.new_model()
    with file_lock(path.with_suffix(".lock"), f"defended model {path.stem}"):
        sidecar = load_model(path, model)
        if sidecar is not None:
            log.info("reusing defended model %s", path.stem)
            return model, sidecar
        sidecar = {"key": path.stem, **fit(model)}
        save_model(path, model, sidecar)
        return model, sidecar
