"""Building models from segmentation-models-pytorch and torchvision by name, with one-line errors.

Both libraries download pretrained encoder weights themselves (smp from the Hugging Face hub,
timm encoders through timm, torchvision through ``torch.hub``); this module only passes the
name on and turns what the library raises (an unknown encoder, unknown weights, no network)
into one line that says what to do instead.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import typing
import warnings
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torchvision.models.segmentation as tv_segmentation
from torch import nn

from benchmark.errors import BenchmarkError

TORCHVISION_BACKBONES = {"deeplabv3": ("resnet50", "resnet101", "mobilenet_v3_large"),
                         "fcn": ("resnet50", "resnet101"), "lraspp": ("mobilenet_v3_large",)}
"""The backbones torchvision builds each segmentation architecture with (``<arch>_<backbone>``)."""

TORCHVISION_WEIGHT_ALIASES = {"imagenet": "DEFAULT"}
"""smp's name for ImageNet weights, accepted for torchvision backbones too."""


def smp_model(arch: str | type[nn.Module], options: dict[str, Any], num_classes: int, in_channels: int,
              encoder: str, encoder_weights: str | None) -> nn.Module:
    """An smp architecture (by name, or an smp model class); random encoder weights unless
    ``encoder_weights`` names the library's (for ``tu-`` timm encoders any name means timm's
    default pretrained tag)."""
    check_smp_encoder(encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm/smp warn about unused pretrained configs
        try:
            create = functools.partial(smp.create_model, arch) if isinstance(arch, str) else arch
            return create(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels,
                          classes=num_classes, **options)
        except Exception as error:
            if encoder_weights is None:
                raise
            raise weights_error(encoder, encoder_weights, error) from error


def check_smp_encoder(encoder: str) -> None:
    """An smp encoder name, or ``tu-`` + a timm model name; else one line with close names."""
    if encoder.startswith("tu-"):
        if not timm.is_model(encoder[3:]):
            close = difflib.get_close_matches(encoder[3:], timm.list_models(), n=3, cutoff=0.6)
            raise unknown_encoder(encoder, [f"tu-{name}" for name in close], "a timm model name after 'tu-'")
    elif encoder not in smp.encoders.get_encoder_names():
        names = smp.encoders.get_encoder_names()
        close = difflib.get_close_matches(encoder, names, n=3, cutoff=0.5)
        raise unknown_encoder(encoder, close, "an smp encoder name or tu-<timm model>")


def torchvision_model(arch: str, num_classes: int, in_channels: int, encoder: str,
                      encoder_weights: str | None) -> nn.Module:
    """torchvision's ``<arch>_<encoder>`` with its auxiliary head where it has one; no
    pretrained segmentation weights ever, ImageNet backbone weights only if asked for."""
    check_torchvision_backbone(arch, encoder)
    if in_channels != 3:
        raise BenchmarkError(f"torchvision's {arch}_{encoder} takes 3-channel images, not {in_channels}")
    builder = getattr(tv_segmentation, f"{arch}_{encoder}")
    backbone_weights = None
    if encoder_weights is not None:
        name = TORCHVISION_WEIGHT_ALIASES.get(encoder_weights, encoder_weights)
        weights_enum = _weights_enum(builder)
        try:
            backbone_weights = weights_enum.verify(name)
        except (KeyError, ValueError) as error:
            raise BenchmarkError(f"unknown --encoder-weights {encoder_weights!r} for torchvision's {encoder}; "
                                 f"known: imagenet, {', '.join(w.name for w in weights_enum)}") from error
    aux = {"aux_loss": True} if arch != "lraspp" else {}
    try:
        return builder(weights=None, weights_backbone=backbone_weights, num_classes=num_classes, **aux)
    except Exception as error:
        if backbone_weights is None:
            raise
        raise weights_error(encoder, encoder_weights or "", error) from error


def check_torchvision_backbone(arch: str, encoder: str) -> None:
    if encoder not in TORCHVISION_BACKBONES[arch]:
        raise unknown_encoder(encoder, list(TORCHVISION_BACKBONES[arch]), f"a torchvision backbone of {arch}")


def _weights_enum(builder: Any) -> Any:
    """The weights enum of ``builder``'s ``weights_backbone`` parameter."""
    hint = typing.get_type_hints(builder)["weights_backbone"]
    return next(arg for arg in typing.get_args(hint) if inspect.isclass(arg))


def unknown_encoder(encoder: str, close: list[str], expected: str) -> BenchmarkError:
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return BenchmarkError(f"unknown --encoder {encoder!r}: expected {expected}{hint}")


def weights_error(encoder: str, encoder_weights: str, error: Exception) -> BenchmarkError:
    """An unknown weights name, or (any other failure while fetching) no network."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, KeyError) and "Wrong pretrained weights" in str(error):
        return BenchmarkError(f"unknown --encoder-weights {encoder_weights!r} for encoder {encoder!r}: "
                              f"{text.strip(chr(34))}")
    return BenchmarkError(
        f"cannot fetch {encoder_weights!r} weights for encoder {encoder!r} ({type(error).__name__}: {text}); "
        f"offline, give the model's starting weights as a local .safetensors file with --init-weights FILE "
        f"instead (README: Running at full scale)")
