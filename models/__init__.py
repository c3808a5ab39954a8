"""The model zoo: named segmentation models built from segmentation-models-pytorch + timm.

A zoo entry is data (architecture + encoder + options), not a class per combination
(after segmentation-models-pytorch). Every builder takes ``(num_classes, in_channels)`` and
returns an ``nn.Module`` mapping ``[B,in_channels,H,W]`` images to ``[B,num_classes,H,W]``
logits. Encoders start from random weights (``encoder_weights=None``): nothing is ever
downloaded; pass a local ``.safetensors`` file to :func:`build` to start from weights.

Add a model with ``@models.register("name")`` on a builder function, optionally setting
``size_divisor`` (input sides must be multiples of it) with :func:`register`.
"""

from __future__ import annotations

import logging
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


@dataclass(frozen=True)
class ZooEntry:
    """A registered model: its builder and what it needs of its input."""

    name: str
    builder: Builder
    size_divisor: int = 32
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return self.description or (self.builder.__doc__ or "").strip().split("\n")[0]


registry: Registry[ZooEntry] = Registry("model")


def register(name: str, size_divisor: int = 32, description: str = "") -> Callable[[Builder], Builder]:
    """Decorator: ``@models.register("tiny", size_divisor=8)`` on ``(num_classes, in_channels) -> nn.Module``."""

    def decorate(builder: Builder) -> Builder:
        registry.add(name, ZooEntry(name, builder, size_divisor, description))
        return builder

    return decorate


def check_image_size(name: str, height: int, width: int) -> None:
    """Raise a one-line error when the architecture cannot take ``height`` x ``width`` images."""
    divisor = registry.get(name).size_divisor
    if height % divisor or width % divisor:
        raise BenchmarkError(
            f"model {name!r} needs image sides divisible by {divisor}, got {height}x{width}; "
            f"try --image-size {max(divisor, round(height / divisor) * divisor)}"
        )


def build(name: str, num_classes: int, in_channels: int = 3, weights: str | Path | None = None) -> nn.Module:
    """Build zoo model ``name``; optionally load a local safetensors (or weights-only torch) file."""
    model = registry.get(name).builder(num_classes, in_channels)
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
        model.load_state_dict(state)
    except UnpicklingError as error:
        raise BenchmarkError(
            f"refusing to load {str(path)!r}: not a weights-only PyTorch file ({refusal_reason(error)}); "
            f"give a .safetensors file or a .pt file holding only tensors") from error
    except Exception as error:  # any malformed or mismatched file is a user error
        raise BenchmarkError(f"cannot load weights from {str(path)!r}: {str(error).splitlines()[0]}") from error


def refusal_reason(error: UnpicklingError) -> str:
    """What torch's weights-only unpickler refused, without its advice to load unsafely."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines()]
    return next((line for line in lines if line and not line.startswith(boilerplate)), "unreadable pickle")


from models import zoo  # noqa: E402,F401  (registers the built-in zoo)
