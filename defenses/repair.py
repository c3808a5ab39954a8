"""Pieces shared by the model-repair defenses (finetune, nad, anp, clp, ibau, fst, neural_cleanse).

- :func:`tune`: the clean fine-tuning loop every tuning defense runs, with a pluggable loss
  (per-pixel cross-entropy with the ignore index, plus whatever the defense adds).
- BatchNorm is handled one way for all of them: running statistics stay **frozen** at the
  values learned on the whole training set (BatchNorm modules in eval mode while the rest of
  the model trains; their affine weights still learn). A clean budget is a few dozen images:
  re-estimating the statistics from it would replace estimates over thousands of images with
  noisier ones, a budget of a handful of images would normalise by batch noise, and batches
  that carry synthetic triggers (Neural Cleanse's unlearning, I-BAU's perturbation) would drag
  the statistics toward the trigger.
- :func:`stage_features`: the feature maps of a segmentation model's encoder stages (smp's
  ``model.encoder`` returns them as a list), or of modules named by the user.

Sources: the loop is the clean fine-tuning of Fine-Pruning (Liu et al. 2018) and of
BackdoorBench's ``ft`` baseline, made per-pixel. Departure: BackdoorBench fine-tunes with
BatchNorm in train mode, re-estimating its statistics from the budget; frozen statistics are
our choice for the reasons above, stated here once for every repair defense.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.plugin import IGNORE_INDEX, BenchmarkError, NotApplicable
from benchmark.toolkit import autocast, batch_indices, to_input
from defenses.base import CleanBudget

log = logging.getLogger(__name__)

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

Loss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(model, float images, masks) -> scalar loss`` of one training batch."""


def pixel_ce(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy of the model's logits, ignore index skipped."""
    return pixel_ce_of(forward(model, images), masks)


def pixel_ce_of(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX)


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits with gradients, under the device's autocast, in channels_last."""
    with autocast(images.device):
        return model(images.contiguous(memory_format=torch.channels_last)).float()


def train_frozen_bn(model: nn.Module) -> None:
    """Train mode everywhere except BatchNorm, whose running statistics stay as trained."""
    model.train()
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            module.eval()


def shuffled_batches(budget: CleanBudget, generator: torch.Generator,
                     flip: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of the budget as ``(float images, masks)`` in a shuffled order; with ``flip``
    each image (and its mask) is mirrored left-right with probability 1/2."""
    order = torch.randperm(len(budget), generator=generator)
    for index in batch_indices(order, budget.batch_size):
        images, masks = to_input(budget.images[index].to(budget.device)), budget.masks[index].to(budget.device)
        if flip:
            mirrored = (torch.rand(len(index), generator=generator) < 0.5).to(budget.device)
            images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
            masks = torch.where(mirrored[:, None, None], masks.flip(-1), masks)
        yield images, masks


def adamw(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr)


def tune(model: nn.Module, budget: CleanBudget, epochs: int, lr: float, loss: Loss = pixel_ce,
         parameters: list[nn.Parameter] | None = None, after_step: Callable[[], None] | None = None,
         desc: str = "tune", optimizer: Callable[[list[nn.Parameter], float], torch.optim.Optimizer] = adamw,
         cosine: bool = False, flip: bool = False) -> float:
    """Fine-tune ``model`` in place on the budget: AdamW (or ``optimizer``), BatchNorm
    statistics frozen, the same shuffle for the same budget; with ``cosine`` the rate anneals
    once per epoch, with ``flip`` half the images are mirrored (the horizontal flip of the
    usual training transform). Returns the mean loss of the last epoch."""
    params = list(model.parameters()) if parameters is None else parameters
    optimizer = optimizer(params, lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if cosine else None
    generator = torch.Generator().manual_seed(0)
    last = float("nan")
    for epoch in range(epochs):
        train_frozen_bn(model)
        total, steps = torch.zeros((), device=budget.device), 0
        for images, masks in shuffled_batches(budget, generator, flip):
            value = loss(model, images, masks)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            total += value.detach()
            steps += 1
        if schedule is not None:
            schedule.step()
        last = float(total) / max(steps, 1)
        if not math.isfinite(last):
            raise BenchmarkError(f"{desc}: loss became {last} in epoch {epoch + 1}; lower the defense's lr")
        log.debug("%s: epoch %d/%d, loss %.4f", desc, epoch + 1, epochs, last)
    model.eval()
    return last


def stage_features(model: nn.Module, layers: tuple[str, ...], stages: int, images: torch.Tensor,
                   what: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(logits, feature maps)`` of one forward pass (with gradients).

    The features are the outputs of the modules named in ``layers``, or, when it is empty,
    the last ``stages`` outputs of ``model.encoder`` (smp encoders return one map per stage).
    """
    captured: list[torch.Tensor] = []
    with capture(model, layers, stages, captured, what):
        logits = forward(model, images)
    return logits, captured


@contextlib.contextmanager
def capture(model: nn.Module, layers: tuple[str, ...], stages: int, into: list[torch.Tensor],
            what: str) -> Iterator[None]:
    modules = dict(model.named_modules())
    if layers:
        missing = [name for name in layers if name not in modules]
        if missing:
            close = difflib.get_close_matches(missing[0], list(modules), n=3, cutoff=0.3)
            raise BenchmarkError(f"{what}: layer {missing[0]!r} is not a module of the model"
                                 + (f"; did you mean {', '.join(close)}?" if close else ""))

        def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            into.append(output)

        handles = [modules[name].register_forward_hook(keep) for name in layers]
    else:
        encoder = getattr(model, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise BenchmarkError(f"{what}: the model has no 'encoder' module; name the feature "
                                 "layers with the defense parameter 'layers'")

        def keep_stages(module: nn.Module, args: tuple, output) -> None:
            if not isinstance(output, (list, tuple)):
                raise BenchmarkError(f"{what}: model.encoder does not return a list of stage "
                                     "features; name the feature layers with 'layers'")
            maps = [o for o in output if isinstance(o, torch.Tensor) and o.ndim == 4]
            into.extend(maps[-stages:])

        handles = [encoder.register_forward_hook(keep_stages)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def require_encoder_batchnorm(model: nn.Module, what: str, method: str) -> None:
    """One clear line when the model (or its ``encoder``, if it has one) has no affine
    BatchNorm: SegFormer's MiT encoder uses LayerNorm, so BatchNorm-based repairs do not apply."""
    encoder = getattr(model, "encoder", None)
    scope = encoder if isinstance(encoder, nn.Module) else model
    if not any(isinstance(m, BATCH_NORMS) and m.affine for m in scope.modules()):
        where = "encoder" if scope is encoder else "model"
        raise NotApplicable(f"{what}: the model's {where} has no BatchNorm layers (e.g. SegFormer uses "
                             f"LayerNorm); {method} does not apply to it")
