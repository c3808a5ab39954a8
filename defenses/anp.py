"""``anp``: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021, "Adversarial Neuron Pruning
Purifies Backdoored Deep Models"; official code csdongxian/ANP_backdoor).

Backdoor neurons are the ones whose small perturbation changes the output most. ANP gives
every BatchNorm channel (a "neuron") a mask ``m`` in [0, 1] and adversarial multiplicative
noise on its affine parameters: the channel computes ``n * gamma * (m + delta) + beta * (1 + xi)``
with ``|delta|, |xi| <= eps``. It alternates (1) a signed-gradient ascent step of the noise on
the clean loss and (2) a descent step of the masks on ``alpha * L(m) + (1 - alpha) * L(m, noise)``,
then prunes (sets ``gamma = 0``) the channels whose mask fell below a threshold.

Choosing the threshold: the official code prunes at a fixed threshold (0.2) and BackdoorBench
picks the pruning level with the lowest *test ASR*, which uses the trigger and the test set.
Here the threshold is the largest of ``threshold_step, 2 * threshold_step, ...`` whose pruned
model keeps the held-out clean mIoU (a part of the budget the masks never saw) within
``max_drop`` of the unpruned model's: clean budget data only.

Segmentation specifics and departures: the loss is per-pixel cross-entropy (ignore index
skipped); the model's weights stay fixed and BatchNorm uses its running statistics (the
official code optimises masks in train mode, i.e. with batch statistics; with a budget of a
few dozen images those are noisy, see ``defenses/repair.py``); the noise starts uniform in
[-eps, eps] as in the official ``reset(rand_init=True)``; ``iterations`` defaults to 100
(the official 2000 would cost more than training the model here). A model whose encoder has
no BatchNorm (SegFormer) has no ANP neurons where the features are made: the defense says so
in one line.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import nn

from benchmark.plugin import BenchmarkError
from defenses.base import CleanBudget, ModelRepairDefense
from defenses.pruning import budget_miou
from defenses.repair import BATCH_NORMS, pixel_ce, require_encoder_batchnorm

log = logging.getLogger(__name__)


class AdversarialNeuronPruning(ModelRepairDefense):
    """ANP: prune the BatchNorm channels whose masks adversarial neuron noise drives down."""

    name = "anp"

    eps: float = 0.4
    """Bound of the multiplicative noise on each channel's BatchNorm weight and bias."""
    noise_steps: int = 1
    """Signed-gradient ascent steps of the noise per iteration (step size eps / noise_steps)."""
    alpha: float = 0.2
    """Weight of the natural loss; 1 - alpha weighs the loss under noise."""
    mask_lr: float = 0.2
    """SGD (momentum 0.9) learning rate of the masks."""
    iterations: int = 100
    """Mask updates, each on one batch of the tuning part of the budget."""
    threshold_step: float = 0.05
    """Granularity of the candidate pruning thresholds."""
    max_drop: float = 0.10
    """Largest tolerated relative drop of held-out clean mIoU when choosing the threshold."""
    holdout: float = 0.5
    """Fraction of the budget held out to choose the threshold (the rest trains the masks)."""

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        if self.noise_steps < 1 or self.iterations < 1:
            raise ValueError(f"noise_steps and iterations must be >= 1, got {self.noise_steps}, {self.iterations}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.mask_lr > 0:
            raise ValueError(f"mask_lr must be > 0, got {self.mask_lr}")
        if not 0 < self.threshold_step < 1:
            raise ValueError(f"threshold_step must be in (0, 1), got {self.threshold_step}")
        if not 0 <= self.max_drop <= 1:
            raise ValueError(f"max_drop must be in [0, 1], got {self.max_drop}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        if len(budget) < 2:
            raise BenchmarkError(f"anp needs at least 2 budget images, got {len(budget)}")
        model = copy.deepcopy(model).eval().requires_grad_(False)
        require_encoder_batchnorm(model, "anp", "adversarial neuron pruning")
        neurons = NeuronNoise(model)
        tune, holdout = budget.split(self.holdout)
        try:
            self.optimise_masks(model, neurons, tune)
        finally:
            neurons.remove()
        masks = torch.cat([m.detach() for m in neurons.masks])
        before = budget_miou(model, holdout)
        limit = before * (1 - self.max_drop)
        original = [bn.weight.detach().clone() for bn in neurons.layers]
        chosen, chosen_miou = 0.0, before
        for threshold in candidate_thresholds(self.threshold_step):
            prune(neurons.layers, neurons.masks, original, threshold)
            miou = budget_miou(model, holdout)
            log.debug("anp: threshold %.2f prunes %d channels, held-out mIoU %.4f (limit %.4f)",
                      threshold, int((masks < threshold).sum()), miou, limit)
            if not miou >= limit:  # NaN-safe
                break
            chosen, chosen_miou = threshold, miou
        prune(neurons.layers, neurons.masks, original, chosen)
        pruned = int((masks < chosen).sum())
        self.report = {"threshold": chosen, "pruned_channels": pruned, "total_channels": masks.numel(),
                       "pruned_fraction": pruned / masks.numel(), "holdout_miou_before": before,
                       "holdout_miou_after": chosen_miou, "mask_mean": float(masks.mean()),
                       "mask_below_0.2": int((masks < 0.2).sum())}
        log.info("anp: threshold %.2f prunes %d/%d BatchNorm channels; held-out mIoU %.4f -> %.4f",
                 chosen, pruned, masks.numel(), before, chosen_miou)
        return model

    def optimise_masks(self, model: nn.Module, neurons: "NeuronNoise", budget: CleanBudget) -> None:
        mask_optimizer = torch.optim.SGD(neurons.masks, lr=self.mask_lr, momentum=0.9)
        generator = torch.Generator().manual_seed(0)
        batches = itertools.cycle(list(budget.batches()))
        for _ in range(self.iterations):
            images, masks = next(batches)
            if self.eps > 0:
                neurons.randomise(self.eps, generator)
                for _ in range(self.noise_steps):  # ascend the clean loss in the noise
                    neurons.perturbed = True
                    loss = pixel_ce(model, images, masks)
                    gradients = torch.autograd.grad(loss, neurons.noise, allow_unused=True)
                    neurons.step_noise(gradients, self.eps / self.noise_steps, self.eps)
            loss = torch.zeros((), device=images.device)
            if self.alpha > 0:
                neurons.perturbed = False
                loss = loss + self.alpha * pixel_ce(model, images, masks)
            if self.alpha < 1:
                neurons.perturbed = self.eps > 0
                loss = loss + (1 - self.alpha) * pixel_ce(model, images, masks)
            mask_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            mask_optimizer.step()
            neurons.clip_masks()
        neurons.perturbed = False


class NeuronNoise:
    """Per-channel masks and weight/bias noise on every affine BatchNorm, applied by forward hooks.

    A BatchNorm in eval mode outputs ``y = n * gamma + beta``; the hook returns
    ``(y - beta) * c_w + beta * c_b`` with ``c_w = m (+ delta)`` and ``c_b = 1 (+ xi)``.
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.affine]
        device = next(model.parameters()).device
        self.masks = [torch.ones(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.weight_noise = [torch.zeros(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.bias_noise = [torch.zeros(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.noise = self.weight_noise + self.bias_noise
        self.perturbed = False
        self.handles = [bn.register_forward_hook(self._hook(i)) for i, bn in enumerate(self.layers)]

    def _hook(self, i: int):
        def apply(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            shape = (1, -1) + (1,) * (output.ndim - 2)
            weight_coefficient, bias_coefficient = self.masks[i], torch.ones_like(self.masks[i])
            if self.perturbed:
                weight_coefficient = weight_coefficient + self.weight_noise[i]
                bias_coefficient = bias_coefficient + self.bias_noise[i]
            bias = module.bias.view(shape)
            return (output - bias) * weight_coefficient.view(shape) + bias * bias_coefficient.view(shape)

        return apply

    @torch.no_grad()
    def randomise(self, eps: float, generator: torch.Generator) -> None:
        for noise in self.noise:
            noise.copy_((torch.rand(noise.shape, generator=generator) * 2 - 1) * eps)

    @torch.no_grad()
    def step_noise(self, gradients: tuple[torch.Tensor, ...], step: float, eps: float) -> None:
        for noise, gradient in zip(self.noise, gradients):
            if gradient is not None:  # None: a BatchNorm the forward pass does not use
                noise.add_(step * gradient.sign()).clamp_(-eps, eps)

    @torch.no_grad()
    def clip_masks(self) -> None:
        for mask in self.masks:
            mask.clamp_(0, 1)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def candidate_thresholds(step: float) -> list[float]:
    """``step, 2 * step, ...`` below 1: pruning grows with the threshold."""
    return [round(k * step, 10) for k in range(1, int(1 / step) + 1) if k * step < 1]


@torch.no_grad()
def prune(layers: list[nn.Module], masks: list[torch.Tensor], original: list[torch.Tensor], threshold: float) -> None:
    """Channels whose mask is below ``threshold`` get BatchNorm weight 0 (they emit their bias,
    as the official pruning does); the others keep their original weight."""
    for bn, mask, weight in zip(layers, masks, original):
        bn.weight.copy_(torch.where(mask < threshold, torch.zeros_like(weight), weight))
