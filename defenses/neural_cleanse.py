"""``neural_cleanse``: Neural Cleanse (Wang et al., IEEE S&P 2019, "Neural Cleanse: Identifying
and Mitigating Backdoor Attacks in Neural Networks"; official code bolunwang/backdoor).

For every candidate target class t, Neural Cleanse reverse-engineers the smallest trigger
that sends clean inputs to t: a mask ``m`` (one value per pixel position) and a pattern ``p``,
applied as ``(1 - m) * x + m * p``, minimising ``CE(f(x'), t) + cost * |m|_1``. A backdoor
target needs a far smaller mask than the other classes; the median absolute deviation (MAD)
of the mask norms turns that into an anomaly index (consistency constant 1.4826), and a class
whose norm lies below the median with an index above 2 is flagged. The model is then
repaired by *unlearning*: fine-tuning on clean budget images of which a fraction carries the
reversed trigger with their correct labels.

Segmentation specifics (the per-pixel objective): a segmentation backdoor need not send every
pixel to the target: a fine-grained attack turns only the victim class (car -> road). So for
target t the objective is the per-pixel cross-entropy toward t over the pixels of *one* source
class, the one currently easiest to flip (the minimum over the source classes present with at
least 1% of the batch's labelled pixels; pixels already labelled t are skipped). An
image-level attack is found as well (every source flips), and the report names the source.
Success of a step is the fraction of that source's pixels predicted as t.

Faithful parts and departures: Adam at lr 0.1 on tanh-parametrised mask and pattern, the
cost adjusted as in the official code (start at ``init_cost``; after ``patience`` successive
steps at or above ``success`` multiply it by 1.5, after ``patience`` below divide it by
1.5 ** 1.5), the smallest successful mask kept. Departures: ``steps`` optimisation steps per
class (one budget batch each) instead of epochs over the data, to stay cheaper than training
the model; the mask starts faint (0.1) rather than random, so short runs approach the
trigger from below; success at 0.95 of the source's pixels rather than 0.99, since boundary
pixels of a segment rarely all flip; a class for which no step reaches it gets the image area
as its norm (no trigger smaller than everything was found), not the norm of its last,
unsuccessful mask, which the L1 cost may have shrunk into a false outlier. Only the top
flagged class is unlearnt. If no class is
flagged the model is returned unchanged. BatchNorm statistics stay frozen while unlearning
(``defenses/repair.py``): triggered batches would otherwise shift them.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.plugin import IGNORE_INDEX, BenchmarkError
from defenses.base import CleanBudget, ModelRepairDefense
from defenses.pruning import budget_miou
from defenses.repair import forward, pixel_ce, tune

log = logging.getLogger(__name__)

MAD_CONSISTENCY = 1.4826
"""Scales the MAD of normally distributed values to their standard deviation (Neural Cleanse)."""
MIN_SOURCE_FRACTION = 0.01
"""A source class needs this share of a batch's labelled pixels to count: a class with a
handful of pixels would make every target look easy."""


class NeuralCleanse(ModelRepairDefense):
    """Neural Cleanse: reverse-engineer a trigger per target class, flag the outlier by MAD, unlearn it."""

    name = "neural_cleanse"

    steps: int = 30
    """Optimisation steps per candidate target class (one budget batch each)."""
    lr: float = 0.1
    """Adam learning rate of the mask and the pattern."""
    init_cost: float = 1e-3
    """Initial weight of the mask's L1 norm (adjusted during the search)."""
    success: float = 0.95
    """Fraction of the source class's pixels that must flip for a step to count as a success."""
    patience: int = 5
    """Successive steps above (below) ``success`` before the cost goes up (down)."""
    anomaly_threshold: float = 2.0
    """A class whose mask norm is below the median with an anomaly index above this is flagged."""
    unlearn_epochs: int = 5
    """Epochs of unlearning on the budget once a class is flagged."""
    unlearn_fraction: float = 0.2
    """Fraction of each unlearning batch stamped with the reversed trigger (labels kept)."""
    unlearn_lr: float = 1e-3
    """AdamW learning rate of the unlearning."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.patience < 1 or self.unlearn_epochs < 0:
            raise ValueError(f"steps and patience must be >= 1 and unlearn_epochs >= 0, got "
                             f"{self.steps}, {self.patience}, {self.unlearn_epochs}")
        if not self.lr > 0 or not self.unlearn_lr > 0 or not self.init_cost >= 0:
            raise ValueError("lr and unlearn_lr must be > 0 and init_cost >= 0")
        if not 0 < self.success <= 1 or not 0 < self.unlearn_fraction <= 1:
            raise ValueError(f"success and unlearn_fraction must be in (0, 1], got {self.success}, "
                             f"{self.unlearn_fraction}")
        if not self.anomaly_threshold > 0:
            raise ValueError(f"anomaly_threshold must be > 0, got {self.anomaly_threshold}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        if budget.num_classes < 3:
            raise BenchmarkError("neural_cleanse needs at least 3 classes for a median absolute deviation")
        model.eval()
        triggers = [self.reverse_engineer(model, budget, target) for target in range(budget.num_classes)]
        norms = torch.tensor([t.norm for t in triggers])
        anomaly = anomaly_indices(norms)
        names = budget.class_names
        top = int(torch.argmin(norms))
        flagged = [c for c in range(len(norms)) if norms[c] < norms.median() and anomaly[c] > self.anomaly_threshold]
        self.report = {
            "mask_norms": {names[c]: t.norm for c, t in enumerate(triggers)},
            "triggers_found": {names[c]: t.found for c, t in enumerate(triggers)},
            "source_classes": {names[c]: names[t.source] if t.source >= 0 else None for c, t in enumerate(triggers)},
            "anomaly_indices": {names[c]: float(a) for c, a in enumerate(anomaly)},
            "anomaly_index": float(anomaly[top]), "smallest_mask_class": names[top],
            "flagged_class": names[top] if top in flagged else None,
            "flagged_classes": [names[c] for c in flagged],
        }
        log.info("neural_cleanse: mask norms %s; anomaly index %.2f of %s%s",
                 {names[c]: round(t.norm, 1) for c, t in enumerate(triggers)}, float(anomaly[top]), names[top],
                 " (flagged)" if top in flagged else " (not flagged: the model is left as it is)")
        if top not in flagged:
            return model
        return self.unlearn(model, budget, triggers[top])

    def reverse_engineer(self, model: nn.Module, budget: CleanBudget, target: int) -> "Trigger":
        shape = budget.images.shape[-2:]
        device = budget.device
        mask_param = torch.full((1, 1, *shape), math.atanh(2 * 0.1 - 1), device=device, requires_grad=True)
        pattern_param = torch.zeros((1, 3, *shape), device=device, requires_grad=True)
        optimizer = torch.optim.Adam([mask_param, pattern_param], lr=self.lr, betas=(0.5, 0.9))
        cost, above, below = self.init_cost, 0, 0
        best = Trigger(float("inf"), -1, None, None)
        last = best
        batches = list(budget.batches())
        for step in range(self.steps):
            images, masks = batches[step % len(batches)]
            mask, pattern = squash(mask_param), squash(pattern_param)
            logits = forward(model, (1 - mask) * images + mask * pattern)
            source, flip_loss, flipped = easiest_source(logits, masks, target)
            if source < 0:
                continue
            norm = mask.sum()
            loss = flip_loss + cost * norm
            mask_param.grad, pattern_param.grad = torch.autograd.grad(loss, [mask_param, pattern_param])
            optimizer.step()
            last = Trigger(float(norm.detach()), source, mask.detach(), pattern.detach())
            if flipped >= self.success:
                above, below = above + 1, 0
                if last.norm < best.norm:
                    best = last
            else:
                above, below = 0, below + 1
            if above >= self.patience:
                cost, above = cost * 1.5, 0
            elif below >= self.patience:
                cost, below = cost / 1.5 ** 1.5, 0
        if last.mask is None:
            raise BenchmarkError("neural_cleanse: no budget batch has pixels of a class other than the "
                                 f"candidate target {budget.class_names[target]!r}")
        if best.mask is None:  # no trigger found in the steps given: as costly as masking everything
            log.debug("neural_cleanse: class %d never reached success %.2f", target, self.success)
            best = Trigger(float(shape.numel()), last.source, last.mask, last.pattern, found=False)
        log.debug("neural_cleanse: target %d, mask norm %.1f, source %d", target, best.norm, best.source)
        return best

    def unlearn(self, model: nn.Module, budget: CleanBudget, trigger: "Trigger") -> nn.Module:
        model = copy.deepcopy(model)
        before = budget_miou(model, budget)

        def loss(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            count = max(1, round(self.unlearn_fraction * images.shape[0]))
            stamped = (1 - trigger.mask) * images[:count] + trigger.mask * trigger.pattern
            return pixel_ce(model, torch.cat([stamped, images[count:]]), masks)

        tune(model, budget, self.unlearn_epochs, self.unlearn_lr, loss=loss, desc="neural_cleanse unlearning")
        self.report["budget_miou_before_unlearning"] = before
        self.report["budget_miou_after_unlearning"] = budget_miou(model, budget)
        return model


@dataclass(frozen=True)
class Trigger:
    """A reversed trigger: L1 norm of its mask, the source class it flips, mask and pattern;
    ``found`` is False when no step reached the success rate (the norm is then the image area)."""

    norm: float
    source: int
    mask: torch.Tensor | None
    pattern: torch.Tensor | None
    found: bool = True


def squash(param: torch.Tensor) -> torch.Tensor:
    """tanh parametrisation into [0, 1], as in the official code."""
    return torch.tanh(param) / 2 + 0.5


def easiest_source(logits: torch.Tensor, masks: torch.Tensor, target: int) -> tuple[int, torch.Tensor, float]:
    """``(source class, its mean CE toward target, fraction of its pixels predicted as target)``
    for the source class with the lowest CE among those with enough pixels; source -1 if none."""
    ce = F.cross_entropy(logits.float(), torch.full_like(masks, target), reduction="none")
    labelled = (masks != IGNORE_INDEX).sum()
    best: tuple[int, torch.Tensor, float] = (-1, torch.zeros(()), 0.0)
    for source in masks.unique().tolist():
        pixels = masks == source
        if source in (target, IGNORE_INDEX) or pixels.sum() < MIN_SOURCE_FRACTION * labelled:
            continue
        loss = ce[pixels].mean()
        if best[0] < 0 or loss < best[1]:
            best = (source, loss, 0.0)
    if best[0] >= 0:
        pixels = masks == best[0]
        flipped = float((logits.argmax(dim=1)[pixels] == target).float().mean())
        best = (best[0], best[1], flipped)
    return best


def anomaly_indices(norms: torch.Tensor) -> torch.Tensor:
    """|norm - median| / (1.4826 * MAD) per class (the MAD floored to stay finite)."""
    median = norms.median()
    mad = (norms - median).abs().median()
    return (norms - median).abs() / (MAD_CONSISTENCY * mad).clamp_min(1e-6)
