"""The built-in zoo: small timm encoders under the standard smp architectures.

Sizes are chosen so that the whole benchmark runs on a laptop CPU at 64x64 in minutes; the
architectures are the real ones, so a user switches to a larger encoder by registering an
entry with another ``encoder_name``.
"""

from __future__ import annotations

import warnings
from typing import Any

import segmentation_models_pytorch as smp
from torch import nn

from models import register

SMALL_ENCODER = "tu-mobilenetv3_small_100"


def smp_model(arch: str, num_classes: int, in_channels: int, **options: Any) -> nn.Module:
    """An smp architecture with random encoder weights (never downloads)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm/smp warn about unused pretrained configs
        return smp.create_model(
            arch, encoder_weights=None, in_channels=in_channels, classes=num_classes, **options
        )


@register("unet", description="U-Net, MobileNetV3-small encoder (the small default)")
def unet(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("Unet", num_classes, in_channels, encoder_name=SMALL_ENCODER,
                     encoder_depth=4, decoder_channels=(64, 32, 16, 16))


@register("unet_resnet18", description="U-Net, ResNet-18 encoder")
def unet_resnet18(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("Unet", num_classes, in_channels, encoder_name="resnet18")


@register("fpn", description="FPN, MobileNetV3-small encoder")
def fpn(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("FPN", num_classes, in_channels, encoder_name=SMALL_ENCODER,
                     decoder_pyramid_channels=64, decoder_segmentation_channels=32)


@register("deeplabv3plus", size_divisor=16, description="DeepLabV3+, MobileNetV3-small encoder")
def deeplabv3plus(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("DeepLabV3Plus", num_classes, in_channels, encoder_name=SMALL_ENCODER,
                     decoder_channels=64)


@register("pspnet", size_divisor=8, description="PSPNet, MobileNetV3-small encoder")
def pspnet(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("PSPNet", num_classes, in_channels, encoder_name=SMALL_ENCODER)


@register("segformer", description="SegFormer, MiT-B0 encoder")
def segformer(num_classes: int, in_channels: int) -> nn.Module:
    return smp_model("Segformer", num_classes, in_channels, encoder_name="mit_b0")
