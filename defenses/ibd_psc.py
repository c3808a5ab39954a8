"""``ibd_psc``: IBD-PSC (Hou et al., ICML 2024, "IBD-PSC: Input-level Backdoor Detection via
Parameter-oriented Scaling Consistency"), adapted to segmentation.

Amplifying the BatchNorm parameters of a backdoored model's last layers wrecks its predictions
on clean inputs, while on triggered inputs the backdoor keeps predicting the target with high
confidence. The defense builds ``models`` copies of the model whose last ``start``, ...,
``start + models - 1`` BatchNorm layers have their scale and shift multiplied by
``amplification``, and scores an input by its parameter-oriented scaling consistency (PSC):
the mean, over the copies, of the probability they give the original model's predicted label.
High = suspicious.

``start`` is chosen on clean budget images only, as in the official code: the smallest number
of last BatchNorm layers whose amplification makes the model wrong on at least ``error`` of
the budget's labelled pixels. The whole budget then calibrates the threshold: ``start`` is one
integer chosen from the labels' error rate, not from the score being thresholded, and halving
the calibration set (``split=true``, the committed cells) widens the spread of the clean
rejection rate.

Segmentation specifics: PSC is per pixel (the probability the copies give that pixel's
original label) and an image scores the mean over its pixels (``aggregate=mean``), the
fraction-of-confidence analogue of the classifier's one PSC per image; "wrong" is per pixel.
The map is *not* standardised per predicted class by default (``standardize=false``; the
official code thresholds the raw PSC): a triggered image-level input is predicted as the
target everywhere, and the target (road) is the most stable class of clean scenes, so
standardising a triggered pixel by clean road pixels ranked triggered inputs *below* clean
ones (detection AUROC 0.0 on ``image_level``, every seed; the raw mean PSC separates them
at every amplified depth we tried, 1 to 30 of 42 layers). ``standardize=true, split=true``
reproduces the committed cells.

Known limit (the ``image_level`` control, ``tests/controls``): AUROC 1.0 on seeds 0 and 2,
0.0 on seed 1. On the seed-1 model the backdoor does not survive amplification: with the last
8 layers (the decoder's) amplified, triggered pixels keep their label with mean probability
0.69 against 0.71 for clean ones, and with 20 or more (into the encoder) 0.43 against 0.69;
only the last 1-4 layers keep the premise (AUROC 0.98-1.0), at a clean pixel error of 0.04-0.10,
far below the official ``xi = 0.6``, which picks 24 layers here. Choosing ``error`` by that
would be choosing on the attack, so the official rule stays.

A model without BatchNorm (SegFormer uses LayerNorm) cannot be amplified this way: the defense
says so in one line. Layers are ordered as the model registers them (encoder, then decoder,
then head in the smp models), which is their order in the forward pass.

Source read: BackdoorBox ``core/defenses/IBD_PSC.py`` (THUYimingLi/BackdoorBox): the
BatchNorm2d layers in module order, reversed; ``prob_start`` (strict ``> xi``); copies
amplifying ``sorted_indices[:k + 1]`` for ``k`` in ``start .. start + n - 1``; the softmax
of the original prediction averaged over the copies. Departures: the copies amplify one
layer fewer (``start`` .. ``start + n - 1`` layers, with ``>=``; kept so that the committed
cells reproduce), and the threshold is the clean budget's rank at ``fpr`` (every detector's
rule) instead of the fixed ``T = 0.9``.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from benchmark.plugin import IGNORE_INDEX, BenchmarkError, NotApplicable, Plugin
from benchmark.toolkit import logits_of
from defenses.base import CleanBudget
from defenses.pixel_detection import PixelDetectionDefense

log = logging.getLogger(__name__)


class IbdPsc(PixelDetectionDefense):
    """IBD-PSC: reject inputs whose predictions stay confident when BatchNorm is amplified."""

    name = "ibd_psc"

    aggregate: str = "mean"
    """How the per-pixel map becomes one score per image (quantile, mean or class_max). The mean
    here: measured, a high quantile ranks image-level triggered inputs below clean ones (their
    one predicted class has none of the rare-class outliers that set a clean image's tail)."""
    standardize: bool = False
    """Standardise each pixel's PSC by the clean pixels predicted as its class (off: the
    official code scores the raw PSC; on, the target's stability inverts the score)."""
    amplification: float = 1.5
    """Factor on the scale and shift of the amplified BatchNorm layers (omega)."""
    models: int = 5
    """Amplified copies averaged (n): the last ``start`` .. ``start + models - 1`` layers."""
    split: bool = Plugin.added(False, legacy=True)
    """Choose ``start`` on half of the budget and calibrate on the other half (the committed
    cells) instead of using the whole budget for both."""
    error: float = 0.6
    """Clean pixel error (xi) that amplifying the last ``start`` layers must reach."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.amplification > 1:
            raise ValueError(f"amplification must be > 1, got {self.amplification}")
        if self.models < 1:
            raise ValueError(f"models must be >= 1, got {self.models}")
        if not 0 < self.error < 1:
            raise ValueError(f"error must be in (0, 1), got {self.error}")

    def prepare(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        layers = batch_norms(model)
        if not layers:
            raise NotApplicable("ibd_psc does not apply to this model: it has no BatchNorm layer to amplify "
                                 "(e.g. segformer uses LayerNorm)")
        if len(budget) < 2:
            raise BenchmarkError(f"ibd_psc needs at least 2 budget images, got {len(budget)}")
        selection, calibration = budget.split(0.5) if self.split else (budget, budget)
        start = len(layers)
        for count in range(1, len(layers) + 1):
            if clean_error(amplified(model, count, self.amplification), selection) >= self.error:
                start = count
                break
        counts = [min(len(layers), start + i) for i in range(self.models)]
        self._copies = [amplified(model, count, self.amplification) for count in counts]
        self.report = {"batch_norm_layers": len(layers), "amplified_layers": counts}
        log.info("ibd_psc: amplifying the last %s of %d BatchNorm layers", counts, len(layers))
        return calibration

    def pixel_scores(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = logits_of(model, images).argmax(dim=1)
        psc = torch.zeros(labels.shape, device=images.device)
        for copy_ in self._copies:
            probabilities = logits_of(copy_, images).softmax(dim=1)
            psc += probabilities.gather(1, labels.unsqueeze(1)).squeeze(1)
        return psc / len(self._copies), labels


def batch_norms(model: nn.Module) -> list[str]:
    """Names of the affine BatchNorm layers, in registration (forward) order."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


def amplified(model: nn.Module, count: int, factor: float) -> nn.Module:
    """A copy of ``model`` with the scale and shift of its last ``count`` BatchNorm layers times ``factor``."""
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    with torch.no_grad():
        for name in batch_norms(copy_)[-count:]:
            modules[name].weight.mul_(factor)
            modules[name].bias.mul_(factor)
    return copy_


def clean_error(model: nn.Module, budget: CleanBudget) -> float:
    """Fraction of the budget's labelled pixels the model gets wrong."""
    wrong = total = 0
    for images, masks in budget.batches():
        labelled = masks != IGNORE_INDEX
        wrong += int((logits_of(model, images).argmax(dim=1) != masks)[labelled].sum())
        total += int(labelled.sum())
    return wrong / max(1, total)
