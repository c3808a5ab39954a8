"""The model zoo: named segmentation models from segmentation-models-pytorch, torchvision and timm.

A zoo entry is data (architecture + encoder + options), not a class per combination (after
segmentation-models-pytorch): :mod:`models.zoo` lists the built-in entries. An entry that
names an encoder takes another one at build time (``--encoder resnet50``: any smp encoder
name, or ``tu-<timm name>``; for torchvision entries the backbones torchvision offers), so
DeepLabV3 with a ResNet-50 is one flag away. A model maps ``[B,in_channels,H,W]`` images to
``[B,num_classes,H,W]`` logits, or, for torchvision models with an auxiliary head, to a dict
``{"out": logits, "aux": logits}`` (the engine trains the auxiliary head and predicts from
``"out"``).

Encoders start from random weights: nothing is downloaded unless ``encoder_weights`` names
weights the library knows (``imagenet``), which the library then downloads itself. Offline,
give a local ``.safetensors`` file to :func:`build` (``--init-weights``) instead, or use an
entry whose ``pretrained`` weights ship in an installed package (``unet_effl0_imagenet``:
ImageNet EfficientNet-Lite0 from the ``[pretrained]`` extra, :mod:`models.pretrained`).

Add a model with ``@models.register("name")`` on a builder ``(num_classes, in_channels) ->
nn.Module``, optionally setting ``size_divisor`` (input sides must be multiples of it).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from pickle import UnpicklingError  # the exception type only: nothing here unpickles
from typing import Any, Callable

import torch
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.registry import Registry

log = logging.getLogger(__name__)

Builder = Callable[[int, int], nn.Module]
LibraryBuilder = Callable[[int, int, str, "str | None"], nn.Module]
"""``(num_classes, in_channels, encoder, encoder_weights) -> nn.Module`` of a data entry."""


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: how to build it and which image sizes it takes.

    ``encoder`` is the entry's default encoder; entries without one (plugins registered with
    :func:`register`) have a fixed backbone and take neither ``encoder`` nor ``encoder_weights``.
    """

    name: str
    builder: Builder | LibraryBuilder
    size_divisor: int = 32
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    encoder: str | None = None
    library: str = "plugin"
    """Where the architecture comes from: ``smp``, ``torchvision`` or a ``plugin`` builder."""
    min_size: int = 8
    """The smallest side the architecture takes (PAN's pyramid pooling needs 128)."""
    aux_head: bool = False
    """Whether the model also returns auxiliary logits (``{"out", "aux"}``), trained with ``aux_weight``."""
    check_encoder: Callable[[str], None] | None = None
    """Raises a one-line error for an encoder name the entry's library does not know."""
    pretrained: str = ""
    """The weights the entry's encoder starts from, when they are not the library's random
    init (shown by ``list``); such an entry takes no ``encoder_weights``."""
    check_weights: Callable[[], None] | None = None
    """Raises a one-line error (what to install) when the entry's weights are unavailable."""

    def summary(self) -> str:
        return self.description or (self.builder.__doc__ or "").strip().split("\n")[0]

    def sizes(self) -> str:
        """The image sizes it takes, for ``list``."""
        sides = f"multiples of {self.size_divisor}" if self.size_divisor > 1 else "any"
        return sides + (f", >= {self.min_size}" if self.min_size > 8 else "")

    def parameters(self) -> str:
        """Its settable parameters and defaults, for ``list``."""
        if self.encoder is None:
            return "-"
        aux = ", aux head (aux_weight)" if self.aux_head else ""
        if self.pretrained:
            return f"encoder={self.encoder}, pretrained: {self.pretrained}{aux}"
        return f"encoder={self.encoder}, encoder_weights=None{aux}"


registry: Registry[ZooEntry] = Registry("model")


def register(name: str, size_divisor: int = 32, description: str = "") -> Callable[[Builder], Builder]:
    """Decorator: ``@models.register("tiny", size_divisor=8)`` on ``(num_classes, in_channels) -> nn.Module``."""

    def decorate(builder: Builder) -> Builder:
        registry.add(name, ZooEntry(name, builder, size_divisor, description))
        return builder

    return decorate


def add(entry: ZooEntry) -> ZooEntry:
    """Register a data entry (a library builder with its default encoder)."""
    return registry.add(entry.name, entry)


def size_divisor(name: str, model: Any = None) -> int:
    """The multiple image sides must be of; with a built smp ``model`` (whose encoder may not be
    the entry's), also its encoder's output stride where the architecture needs divisible sides."""
    divisor = registry.get(name).size_divisor
    encoder = getattr(model, "encoder", None)
    if getattr(model, "requires_divisible_input_shape", False) and hasattr(encoder, "output_stride"):
        divisor = math.lcm(divisor, int(encoder.output_stride))
    return divisor


def check_image_size(name: str, height: int, width: int, model: Any = None, what: str = "image") -> None:
    """Raise a one-line error when the architecture cannot take ``height`` x ``width`` inputs."""
    divisor, least = size_divisor(name, model), registry.get(name).min_size
    flag = "--crop-size" if what == "crop" else "--image-size"
    if height % divisor or width % divisor:
        fit = "x".join(str(max(divisor, least, round(side / divisor) * divisor)) for side in dict.fromkeys((height, width)))
        raise BenchmarkError(
            f"model {name!r} needs {what} sides divisible by {divisor}, got {height}x{width}; "
            f"try {flag} {fit}"
        )
    if min(height, width) < least:
        raise BenchmarkError(f"model {name!r} needs {what} sides of at least {least}, got {height}x{width}")


def check_encoder(name: str, encoder: str | None, encoder_weights: str | None = None) -> None:
    """Fail early (before data is loaded) on an encoder the entry cannot take."""
    entry = registry.get(name)
    if entry.encoder is None:
        if encoder is not None or encoder_weights is not None:
            raise BenchmarkError(f"model {name!r} has a fixed backbone: it takes no --encoder or --encoder-weights")
    else:
        if encoder is not None and entry.check_encoder is not None:
            entry.check_encoder(encoder)
        if entry.pretrained and encoder_weights is not None:
            raise BenchmarkError(f"model {name!r} starts from {entry.pretrained}: it takes no --encoder-weights")
    if entry.check_weights is not None:
        entry.check_weights()


def build(name: str, num_classes: int, in_channels: int = 3, weights: str | Path | None = None,
          encoder: str | None = None, encoder_weights: str | None = None) -> nn.Module:
    """Build zoo model ``name`` (with ``encoder`` instead of the entry's, and the library's
    ``encoder_weights``); optionally load a local safetensors (or weights-only torch) file."""
    entry = registry.get(name)
    check_encoder(name, encoder, encoder_weights)
    if entry.encoder is None:
        model = entry.builder(num_classes, in_channels)  # type: ignore[call-arg]
    else:
        model = entry.builder(num_classes, in_channels, encoder or entry.encoder, encoder_weights)  # type: ignore[call-arg]
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights without ever unpickling code: safetensors, or ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as error:
        raise BenchmarkError(
            f"refusing to load {str(path)!r}: not a weights-only PyTorch file ({refusal_reason(error)}); "
            f"give a .safetensors file or a .pt file holding only tensors") from error
    except Exception as error:  # any malformed file is a user error
        raise BenchmarkError(f"cannot load weights from {str(path)!r}: {str(error).splitlines()[0]}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchmarkError(f"cannot load weights from {str(path)!r}: it does not hold a state dict of tensors")
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise BenchmarkError(f"weights file {str(path)!r} does not fit this model ({mismatch}); "
                             "was it saved from another architecture, encoder or number of classes?")
    model.load_state_dict(state)


def state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], shown: int = 3) -> str:
    """A one-line summary of how a state dict differs from the model's: counts of missing,
    unexpected and reshaped tensors, with the first few names of each ('' if it fits)."""
    def few(names: list[str]) -> str:
        return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
                if k in given and given[k].shape != expected[k].shape]
    parts = [f"{len(names)} {what}: {few(names)}" for what, names in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if names]
    return "; ".join(parts)


def refusal_reason(error: UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, without its advice to load unsafely."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines()]
    return next((line for line in lines if line and not line.startswith(boilerplate)), "unreadable pickle")


from models import zoo  # noqa: E402,F401  (registers the built-in zoo)
