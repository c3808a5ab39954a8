"""``clp``: Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022, "Data-free Backdoor
Removal based on Channel Lipschitzness"; official code rkteddy/channel-Lipschitzness-based-pruning).

A backdoor makes a few channels extremely sensitive to a small input pattern. CLP bounds each
channel's Lipschitz constant from its weights alone: for a convolution followed by BatchNorm,
channel k computes ``gamma_k / sigma_k * (W_k * x) + const``, whose upper bound (UCLC) is
the largest singular value of ``W_k`` (reshaped to ``[in_channels, kh*kw]``) times
``|gamma_k| / sigma_k``. In every conv+BN pair, channels whose bound exceeds the layer's
``mean + u * std`` are pruned (BatchNorm weight and bias set to zero). No data is used.

Segmentation specifics: none are needed; every conv+BN pair of the model (encoder and
decoder) is scanned. Pairs are found by tracing one forward pass of a blank image (only its
shape comes from the budget): a BatchNorm whose input is a conv's output forms a pair, which
is more robust than the official code's "last conv seen in module order".

A model whose encoder has no BatchNorm (SegFormer's MiT normalises with LayerNorm; only one
decoder layer has BatchNorm) cannot be repaired this way: the defense says so in one line
rather than prune a decoder layer and call the model repaired.

Control: a genuine negative here. The paper's setting is a BadNets patch on a CIFAR-10
ResNet-18 at u = 3, where CLP removes the backdoor at about a point of accuracy (the formula
above matches the official ``test.py``'s ``CLP``). On ``image_level`` (``unet``, leaderboard
configuration) u = 3 prunes 48 / 40 / 59 of 6,312 channels on seeds 0 / 1 / 2 and post ASR
stays 100 (mIoU cost 0.2 / 9.3 / 0.4); on seed 0, u = 2 prunes 251 channels (ASR 98.4, cost
12.4) and u = 1 prunes 984 (ASR 31.2, mIoU 84.7 -> 30.4). Issue 24 found no u that removes it on ``unet``,
``unet_resnet18`` or an SGD-trained U-Net without wrecking mIoU. The trigger's channels are
not the ones with outlying weight-norm bounds in these models.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from benchmark.plugin import NotApplicable
from defenses.base import CleanBudget, ModelRepairDefense
from defenses.repair import BATCH_NORMS, require_encoder_batchnorm

log = logging.getLogger(__name__)


class ChannelLipschitzPruning(ModelRepairDefense):
    """CLP (data-free): zero the channels whose Lipschitz upper bound is an outlier in their layer."""

    name = "clp"

    u: float = 3.0
    """A channel is pruned when its bound exceeds its layer's mean + u * std (the paper's default 3)."""

    def __post_init__(self) -> None:
        if not self.u >= 0:
            raise ValueError(f"u must be >= 0, got {self.u}")

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        require_encoder_batchnorm(model, "clp", "channel Lipschitzness pruning")
        model = copy.deepcopy(model)
        pairs = conv_bn_pairs(model, budget.images.shape[1:])
        if not pairs:
            raise NotApplicable("clp: no convolution of the model feeds a BatchNorm; channel Lipschitzness "
                                 "pruning does not apply to it")
        pruned, total = {}, 0
        for name, conv, bn in pairs:
            index = outlier_channels(channel_lipschitz_bounds(conv, bn), self.u)
            with torch.no_grad():
                bn.weight[index] = 0
                bn.bias[index] = 0
            total += bn.num_features
            if len(index):
                pruned[name] = index.tolist()
        count = sum(len(v) for v in pruned.values())
        self.report = {"pruned_channels": count, "total_channels": total, "pruned_fraction": count / total,
                       "layers": len(pairs), "pruned_per_layer": {k: len(v) for k, v in pruned.items()}}
        log.info("clp: pruned %d of %d channels in %d conv+BN layers (u=%g)", count, total, len(pairs), self.u)
        return model


def conv_bn_pairs(model: nn.Module, image_shape: torch.Size) -> list[tuple[str, nn.Conv2d, nn.Module]]:
    """``(bn name, conv, bn)`` for every BatchNorm whose input is a Conv2d's output, found by
    tracing one forward pass of blank images of ``image_shape``."""
    names = {module: name for name, module in model.named_modules()}
    produced_by: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # the output kept alive: ids stay unique
    pairs: list[tuple[str, nn.Conv2d, nn.Module]] = []

    def after_conv(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        produced_by[id(output)] = (module, output)

    def before_bn(module: nn.Module, args: tuple) -> None:
        conv, _ = produced_by.get(id(args[0]), (None, None))
        if (conv is not None and conv.out_channels == module.num_features and module.affine
                and module.running_var is not None):
            pairs.append((names[module], conv, module))

    handles = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, BATCH_NORMS)]
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            # two images: GroupNorm (FPN) refuses a single value per channel at the deepest stage
            model.eval()(torch.zeros(2, *image_shape, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def channel_lipschitz_bounds(conv: nn.Conv2d, bn: nn.Module) -> torch.Tensor:
    """Per output channel k: largest singular value of W_k as ``[in, kh*kw]``, times |gamma_k| / sigma_k."""
    weight = conv.weight.detach().float()
    scale = bn.weight.detach().float().abs() / (bn.running_var.float() + bn.eps).sqrt()
    per_channel = weight.reshape(weight.shape[0], weight.shape[1], -1)
    return torch.linalg.matrix_norm(per_channel, ord=2) * scale


def outlier_channels(bounds: torch.Tensor, u: float) -> torch.Tensor:
    """Indices of the channels whose bound exceeds mean + u * std of the layer's bounds."""
    return torch.nonzero(bounds > bounds.mean() + u * bounds.std()).flatten()
