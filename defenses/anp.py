"""``anp``: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021, "Adversarial Neuron Pruning
Purifies Backdoored Deep Models"; official code csdongxian/ANP_backdoor, files read:
``optimize_mask_cifar.py``, ``prune_neuron_cifar.py``, ``models/anp_batchnorm.py``).

Backdoor neurons are the ones whose small perturbation changes the output most. ANP gives
every BatchNorm channel (a "neuron") a mask ``m`` in [0, 1] and adversarial multiplicative
noise on its affine parameters: the channel computes ``n * gamma * (m + delta) + beta * (1 + xi)``
with ``|delta|, |xi| <= eps``. It alternates (1) a signed-gradient ascent step of the noise on
the clean loss (from a uniform random start, as ``reset(rand_init=True)``) and (2) an SGD
step (momentum 0.9) of the masks on ``alpha * L(m) + (1 - alpha) * L(m, noise)``, then
prunes (``gamma = 0``) the channels with the smallest masks.

How many to prune: ``prune_neuron_cifar.py`` prunes the channels in ascending mask order
(``--pruning-by number``) or up to a threshold and reports *test* accuracy and ASR at every
step for the user to pick. Here the number is chosen on clean budget data only: the largest
count on the grid ``prune_step * channels, 2 * prune_step * channels, ...`` (up to
``prune_max``) whose pruned model keeps the held-out clean mIoU (a part of the budget the
masks never saw) within ``max_drop`` (relative) of the unpruned model's. The whole grid is
evaluated: held-out mIoU is not monotone in the count, so the search does not stop at the
first count that fails.

Where the mask acts: the official noisy BatchNorm scales its affine parameters, i.e. the
quantity *before* any activation. timm's ``BatchNormAct2d`` (most channels of the ``unet``
encoder) applies its activation inside the module, so the mask and noise are applied to the
input of its ``act`` submodule; pruning ``gamma = 0`` then means exactly mask 0 in both
phases (the channel emits ``act(beta)``).

Departures: per-pixel cross-entropy (ignore index skipped). The masks are optimised with
BatchNorm on its running statistics (eval mode, ``bn_stats="running"``), where the official
``mask_train`` uses train mode (batch statistics; ``bn_stats="batch"`` does that, on a
throw-away copy whose running statistics it updates). Measured on ``image_level``, ``unet``,
seed 0: with batch statistics the masks barely move (after 200 updates mean 0.987, 5 below
0.2), since every following BatchNorm re-normalises the noise away; pruning the 60
lowest-mask channels then removes the backdoor (test ASR 0.016) but costs 11.5 mIoU points,
so the held-out rule keeps fewer and the ASR stays high (20 channels: ASR 0.78). With running
statistics 100 updates put 531 masks below 0.2 and the held-out rule prunes 320 channels:
post ASR 0.094, mIoU 0.847 -> 0.825 (control met); on seed 1 (102 masks below 0.2) already
the 32 lowest-mask channels cost more than ``max_drop`` of held-out mIoU, nothing is pruned
and the ASR stays 1.0 (control not met); seed 2: 64 channels, post ASR 0.035, mIoU 0.808 ->
0.780 (met). Those are one-thread models; on the models two threads train (CI's), seed 0 is
the same (320 channels, post ASR 0.094), seed 1 prunes 32 channels (post ASR 0.974) and seed 2
none (held-out mIoU 0.818: its first step already costs more than ``max_drop``), so the
control holds on one seed of three there. ``iterations`` defaults to 100 mask updates instead of
2,000: official, 2,000 batches of 128 drawn from 500 images (~500 epochs); here one update
is one pass over the tuning half of the 5% budget (25 images at 64 px), and 2,000 would cost
more than training the model. A model whose encoder has no BatchNorm (SegFormer) has no ANP
neurons where the features are made: the defense says so in one line.

Legacy (the committed cells before issue 24): ``mask_site="output"`` (the mask on the
module's output, after timm's activation), ``prune_by="threshold"`` (thresholds ``threshold_step, 2 * threshold_step, ...`` with a strict
``<``, stopping at the first one that fails the held-out rule) with ``max_drop=0.1``.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import nn

from benchmark.plugin import BenchmarkError, Plugin
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
    """Mask updates, each on one batch of the tuning part of the budget (official: 2,000)."""
    threshold_step: float = 0.05
    """Granularity of the candidate pruning thresholds (``prune_by="threshold"``)."""
    max_drop: float = 0.05
    """Largest tolerated relative drop of held-out clean mIoU when choosing how much to prune."""
    holdout: float = 0.5
    """Fraction of the budget held out to choose how much to prune (the rest trains the masks)."""
    bn_stats: str = Plugin.added("running")
    """BatchNorm statistics while the masks are optimised: ``running`` (eval mode; a departure,
    see the module docstring) or ``batch`` (train mode, as the official code)."""
    mask_site: str = Plugin.added("pre_activation", legacy="output")
    """Where mask and noise act: ``pre_activation`` (before the activation of timm's
    ``BatchNormAct2d``, as pruning ``gamma`` does) or ``output`` (the module's output; legacy)."""
    prune_by: str = Plugin.added("number", legacy="threshold")
    """``number``: the largest count of lowest-mask channels passing the held-out rule;
    ``threshold``: the legacy threshold search that stops at the first failure."""
    prune_step: float = Plugin.added(0.005)
    """Grid step of the pruned count, as a fraction of all channels (``prune_by="number"``)."""
    prune_max: float = Plugin.added(0.3)
    """Largest fraction of channels the count grid reaches (``prune_by="number"``)."""

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
        if not 0 < self.prune_step <= self.prune_max <= 1:
            raise ValueError(f"need 0 < prune_step <= prune_max <= 1, got {self.prune_step}, {self.prune_max}")
        for field, value, options in (("bn_stats", self.bn_stats, ("batch", "running")),
                                      ("mask_site", self.mask_site, ("pre_activation", "output")),
                                      ("prune_by", self.prune_by, ("number", "threshold"))):
            if value not in options:
                raise ValueError(f"{field} must be one of {', '.join(options)}, got {value!r}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        if len(budget) < 2:
            raise BenchmarkError(f"anp needs at least 2 budget images, got {len(budget)}")
        model = copy.deepcopy(model).eval().requires_grad_(False)
        require_encoder_batchnorm(model, "anp", "adversarial neuron pruning")
        tune, holdout = budget.split(self.holdout)
        scores = self.mask_scores(model, tune)
        layers = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.affine]
        masks = torch.cat(scores)
        original = [bn.weight.detach().clone() for bn in layers]
        before = budget_miou(model, holdout)
        limit = before * (1 - self.max_drop)
        choose = self.choose_count if self.prune_by == "number" else self.choose_threshold
        pruned, chosen_miou, setting = choose(model, layers, scores, original, holdout, limit, before)
        self.report = {"pruned_channels": pruned, "total_channels": masks.numel(),
                       "pruned_fraction": pruned / masks.numel(), "holdout_miou_before": before,
                       "holdout_miou_after": chosen_miou, "mask_mean": float(masks.mean()),
                       "mask_below_0.2": int((masks < 0.2).sum()), **setting}
        log.info("anp: prunes %d/%d BatchNorm channels; held-out mIoU %.4f -> %.4f",
                 pruned, masks.numel(), before, chosen_miou)
        return model

    def mask_scores(self, model: nn.Module, budget: CleanBudget) -> list[torch.Tensor]:
        """The optimised masks, one tensor per affine BatchNorm (in ``model.modules()`` order),
        computed on a copy (train mode updates its running statistics)."""
        probe = copy.deepcopy(model)
        neurons = NeuronNoise(probe, self.mask_site)
        try:
            if self.bn_stats == "batch":
                probe.train()
            self.optimise_masks(probe, neurons, budget)
        finally:
            neurons.remove()
        return [m.detach() for m in neurons.masks]

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

    def choose_count(self, model: nn.Module, layers: list[nn.Module], scores: list[torch.Tensor],
                     original: list[torch.Tensor], holdout: CleanBudget, limit: float,
                     before: float) -> tuple[int, float, dict]:
        """The largest count on the grid whose pruned model passes the held-out rule."""
        order = torch.cat(scores).argsort(stable=True)
        total = order.numel()
        step = max(1, round(self.prune_step * total))
        chosen, chosen_miou = 0, before
        for count in range(step, int(self.prune_max * total) + 1, step):
            prune_lowest(layers, original, order[:count])
            miou = budget_miou(model, holdout)
            log.debug("anp: %d channels pruned, held-out mIoU %.4f (limit %.4f)", count, miou, limit)
            if miou >= limit:  # NaN-safe
                chosen, chosen_miou = count, miou
        prune_lowest(layers, original, order[:chosen])
        largest = float(torch.cat(scores)[order[chosen - 1]]) if chosen else None
        return chosen, chosen_miou, {"largest_pruned_mask": largest}

    def choose_threshold(self, model: nn.Module, layers: list[nn.Module], scores: list[torch.Tensor],
                         original: list[torch.Tensor], holdout: CleanBudget, limit: float,
                         before: float) -> tuple[int, float, dict]:
        """Legacy: the last threshold before the first one that fails the held-out rule."""
        chosen, chosen_miou = 0.0, before
        for threshold in candidate_thresholds(self.threshold_step):
            prune(layers, scores, original, threshold)
            miou = budget_miou(model, holdout)
            if not miou >= limit:  # NaN-safe
                break
            chosen, chosen_miou = threshold, miou
        prune(layers, scores, original, chosen)
        return int((torch.cat(scores) < chosen).sum()), chosen_miou, {"threshold": chosen}


class NeuronNoise:
    """Per-channel masks and weight/bias noise on every affine BatchNorm, applied by hooks.

    BatchNorm computes ``y = n * gamma + beta`` (``n`` normalised by batch or running
    statistics); the hook replaces it by ``(y - beta) * c_w + beta * c_b`` with
    ``c_w = m (+ delta)`` and ``c_b = 1 (+ xi)``, i.e. the official noisy BatchNorm. With
    ``site="pre_activation"`` a module with an ``act`` submodule (timm's ``BatchNormAct2d``)
    gets it on the input of that activation, elsewhere on the module's output.
    """

    def __init__(self, model: nn.Module, site: str) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.affine]
        device = next(model.parameters()).device
        self.masks = [torch.ones(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.weight_noise = [torch.zeros(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.bias_noise = [torch.zeros(bn.num_features, device=device, requires_grad=True) for bn in self.layers]
        self.noise = self.weight_noise + self.bias_noise
        self.perturbed = False
        self.handles = []
        for i, bn in enumerate(self.layers):
            act = getattr(bn, "act", None)
            if site == "pre_activation" and isinstance(act, nn.Module):
                self.handles.append(act.register_forward_pre_hook(self._pre_hook(i, bn)))
            else:
                self.handles.append(bn.register_forward_hook(self._hook(i)))

    def _apply(self, i: int, bn: nn.Module, y: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (y.ndim - 2)
        weight_coefficient, bias_coefficient = self.masks[i], torch.ones_like(self.masks[i])
        if self.perturbed:
            weight_coefficient = weight_coefficient + self.weight_noise[i]
            bias_coefficient = bias_coefficient + self.bias_noise[i]
        bias = bn.bias.view(shape)
        return (y - bias) * weight_coefficient.view(shape) + bias * bias_coefficient.view(shape)

    def _hook(self, i: int):
        def apply(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            return self._apply(i, module, output)

        return apply

    def _pre_hook(self, i: int, bn: nn.Module):
        def apply(module: nn.Module, args: tuple) -> tuple:
            return (self._apply(i, bn, args[0]), *args[1:])

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


@torch.no_grad()
def prune_lowest(layers: list[nn.Module], original: list[torch.Tensor], indices: torch.Tensor) -> None:
    """BatchNorm weight 0 for the channels at ``indices`` of the concatenated channel list,
    the original weight for all others."""
    flat = torch.cat(original).clone()
    flat[indices] = 0
    for bn, weight in zip(layers, flat.split([w.numel() for w in original])):
        bn.weight.copy_(weight)
