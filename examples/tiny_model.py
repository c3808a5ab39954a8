"""``tiny_cnn``: a small fully convolutional segmentation net for quick CPU runs.

An example model plugin: register a builder ``(num_classes, in_channels) -> nn.Module`` whose
module maps ``[B, in_channels, H, W]`` images to ``[B, num_classes, H, W]`` logits.
``size_divisor=1``: it never downsamples, so it takes any image size.
"""

from torch import nn

import models


@models.register("tiny_cnn", size_divisor=1)
def tiny_cnn(num_classes: int, in_channels: int) -> nn.Module:
    """Three dilated 3x3 conv-BN-ReLU layers (receptive field 15 px) and a 1x1 classifier."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=4, dilation=4), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, num_classes, 1),
    )
