"""Evaluation of a (defended) predictor on the clean and the triggered test set.

One pass over the test split computes, batch by batch on the device, the clean confusion
matrix, the triggered ASR counts and the PBA confusion matrix; the host reads them once at
the end. The attack sees each batch's masks (and instance ids, if it needs them) when placing
its trigger; ASR counts a region pixel as a hit when it is predicted as ``poison_label`` of
its truth. Attacks with a control region also get their collateral ASR. Rejected inputs are
predicted as an extra "rejected" column: wrong for every class (clean mIoU, PBA) and never the
target (ASR), as DESIGN section 5 requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from attacks import Attack
from benchmark import metrics
from benchmark.datasets import Split
from benchmark.engine import to_input
from benchmark.poisoning import scene_of
from defenses.base import Predictor


@dataclass
class Evaluation:
    clean_miou: float
    asr: float
    pba: float
    per_class_iou: list[float]
    collateral_asr: float | None = None
    """Target rate on the attack's control region (see :func:`benchmark.metrics`), if it has one."""
    clean_rejection_rate: float = 0.0
    triggered_rejection_rate: float = 0.0
    clean_scores: torch.Tensor | None = field(default=None, repr=False)
    triggered_scores: torch.Tensor | None = field(default=None, repr=False)


def evaluate(predictor: Predictor, test: Split, attack: Attack, num_classes: int,
             device: torch.device, batch_size: int = 64, desc: str = "evaluate") -> Evaluation:
    """Clean mIoU, ASR and PBA of ``predictor`` on ``test`` (and detection scores if any)."""
    rejected_class = num_classes
    columns = num_classes + 1
    clean_cm = torch.zeros(num_classes, columns, dtype=torch.long, device=device)
    pba_cm = torch.zeros_like(clean_cm)
    asr_counts = torch.zeros(2, dtype=torch.long, device=device)
    collateral_counts = torch.zeros(2, dtype=torch.long, device=device)
    has_control = False
    rejections = torch.zeros(2, dtype=torch.long, device=device)
    clean_scores, triggered_scores = [], []
    for start in tqdm(range(0, len(test), batch_size), desc=desc, leave=False, disable=None):
        images = to_input(test.images[start:start + batch_size].to(device))
        masks = test.masks[start:start + batch_size].to(device).long()
        scene = scene_of(attack, test.instances, slice(start, start + batch_size), device)

        labels, rejected, scores = predictor.predict_scored(images)
        clean_pred = labels.masked_fill(rejected.view(-1, 1, 1), rejected_class)
        clean_cm += metrics.confusion_matrix(clean_pred, masks, num_classes, num_pred_classes=columns)

        region = attack.attack_region(masks, **scene)
        labels_t, rejected_t, scores_t = predictor.predict_scored(attack.trigger(images, masks, **scene))
        triggered_pred = labels_t.masked_fill(rejected_t.view(-1, 1, 1), rejected_class)
        asr_counts += metrics.attack_success_counts(triggered_pred, region, attack.poison_label(masks, **scene))
        control = attack.control_region(masks, **scene)
        if control is not None:
            has_control = True
            collateral_counts += metrics.attack_success_counts(triggered_pred, control, attack.target)
        benign = attack.benign_region(masks, **scene)
        pba_cm += metrics.confusion_matrix(triggered_pred, metrics.pba_target(masks, benign), num_classes,
                                           num_pred_classes=columns)
        rejections += torch.stack([rejected.sum(), rejected_t.sum()])
        if scores is not None:
            clean_scores.append(scores.float())
            # a triggered image is a positive for detection only if it has something to attack
            triggered_scores.append(scores_t.float()[region.flatten(1).any(dim=1)])
    clean_rate, triggered_rate = (int(v) / len(test) for v in rejections.cpu())
    return Evaluation(
        clean_miou=metrics.mean_iou(clean_cm),
        asr=metrics.attack_success_rate(asr_counts.cpu()),
        pba=metrics.mean_iou(pba_cm),
        collateral_asr=metrics.attack_success_rate(collateral_counts.cpu()) if has_control else None,
        per_class_iou=[None if math.isnan(v) else v for v in metrics.per_class_iou(clean_cm).tolist()],
        clean_rejection_rate=clean_rate,
        triggered_rejection_rate=triggered_rate,
        clean_scores=torch.cat(clean_scores).cpu() if clean_scores else None,
        triggered_scores=torch.cat(triggered_scores).cpu() if triggered_scores else None,
    )
