"""The result record of a cell: one JSON object, built here and nowhere else.

It holds what determined the cell (dataset, model, attack, defense and their parameters,
training settings, seed), every metric of DESIGN section 5 computed from the evaluations,
the costs, and where it ran (device, hardware, package versions). The leaderboard reads
nothing but these records.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import segmentation_models_pytorch
import timm
import torch

from attacks import Attack
from benchmark import metrics
from benchmark.datasets import SegmentationDataset
from benchmark.defending import Fitted
from benchmark.evaluate import Evaluation
from benchmark.spec import RunSpec
from benchmark.store import json_safe
from defenses import Defense


@dataclass
class Outcome:
    """Everything a cell measured: the clean model's, the attacked model's and the defended
    predictor's evaluations (``after`` None when the defense does not apply)."""

    baseline: Evaluation
    before: Evaluation
    after: Evaluation | None
    fitted: Fitted
    sidecar: dict
    """The attacked model's artifact sidecar (its key, poisoned images, training time)."""
    budget_images: int
    eval_seconds: float


def build(spec: RunSpec, data: SegmentationDataset, attack: Attack, defense: Defense, outcome: Outcome,
          device: torch.device, key: str) -> dict:
    before, after, baseline, sidecar = outcome.before, outcome.after, outcome.baseline, outcome.sidecar
    result = {
        "dataset": spec.dataset.name, "model": spec.model, "attack": attack.name, "defense": defense.name,
        "poison_rate": attack.poison_rate, "seed": spec.seed, "num_classes": data.num_classes,
        "class_names": list(data.class_names), "image_size": size_label(data.image_size),
        "train_images": len(data.train), "test_images": len(data.test),
        "batch_size": spec.train.batch_size, "epochs": spec.train.epochs, "lr": spec.train.lr,
        "clean_fraction": spec.clean_fraction,
        "clean_miou": before.clean_miou, "asr": before.asr, "pba": before.pba,
        "baseline_asr": baseline.asr, "baseline_clean_miou": baseline.clean_miou,
        "per_class_iou": before.per_class_iou,
        "poisoned_images": sidecar["poisoned_images"], "clean_budget_images": outcome.budget_images,
        "train_seconds": sidecar["train_seconds"],
        "train_images_per_second": sidecar["train_images_per_second"],
        "defense_seconds": outcome.fitted.seconds, "eval_seconds": outcome.eval_seconds,
        "attack_params": attack.params(), "defense_params": defense.params(),
        **legacy_records(attack, defense),
        "defense_report": defense.report,
        "device": str(device), "hardware": hardware_description(device),
        "versions": package_versions(), "artifact": sidecar["key"], "cell": key,
    }
    if after is None:
        result.update(not_applicable=outcome.fitted.not_applicable, post_clean_miou=None, post_asr=None,
                      post_pba=None, der=None, backdoor_removal=None, miou_cost=None, collapsed=None,
                      post_per_class_iou=None)
        return json_safe(result)
    result.update(
        post_clean_miou=after.clean_miou, post_asr=after.asr, post_pba=after.pba,
        der=metrics.defense_effectiveness_rating(before.asr, after.asr, before.clean_miou, after.clean_miou),
        backdoor_removal=metrics.backdoor_removal(before.asr, after.asr, baseline.asr),
        miou_cost=metrics.miou_cost(before.clean_miou, after.clean_miou),
        collapsed=metrics.collapsed(after.clean_miou, baseline.clean_miou),
        post_per_class_iou=after.per_class_iou)
    result.update(detection_metrics(after, outcome.fitted.predictor))
    if before.collateral_asr is not None:  # attacks with a control region (conditional, instance-level)
        result.update(collateral_asr=before.collateral_asr, post_collateral_asr=after.collateral_asr,
                      baseline_collateral_asr=baseline.collateral_asr)
    result.update(outcome.fitted.record)
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
    return {"torch": torch.__version__, "timm": timm.__version__, "smp": segmentation_models_pytorch.__version__}
