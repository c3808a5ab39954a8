"""Classification's full-image trigger families carried to segmentation: ``blended``, ``sig``,
``wanet`` (with the fine-grained label rule, victims -> target) and ``waba`` (all-to-all).

- ``blended`` (Chen et al. 2017, "Targeted Backdoor Attacks on Deep Learning Systems Using
  Data Poisoning"): a fixed uniform-noise image blended over the whole image at ``trigger_alpha``.
- ``sig`` (Barni et al. 2019, "A New Backdoor Attack in CNNs by Training Set Corruption
  Without Label Poisoning"): a horizontal sinusoid of amplitude ``delta`` and ``frequency``
  periods across the image is added. SIG is a clean-label attack in classification; here its
  trigger is used with relabelled victims (the segmentation setting has no clean-label analogue
  of "images of the target class"), which is a departure.
- ``wanet`` (Nguyen & Tran 2021, "WaNet - Imperceptible Warping-based Backdoor Attack"): the
  image is resampled along a fixed smooth warping field (a random ``grid x grid`` flow,
  upsampled). Departure: WaNet's "noise mode" (random warps kept at their true labels) is left
  out, and ``strength`` defaults above the paper's 0.5, which at 64x64 moves pixels by about a
  quarter pixel and plants nothing in a short training.
- ``waba`` (Dräger et al., "Wavelet-Based Backdoor Attack", IEEE TGRS 2023; code ndraeger/waba):
  the image's low-frequency Haar band after ``levels`` levels is blended with that of a trigger
  image, detail bands kept; the label rule is all-to-all (class c -> c + 1 mod C), as in the
  paper. Departure: the trigger image is a fixed random block pattern (4x4-pixel blocks at
  64x64), not the paper's photograph; ``target`` is unused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.base import Attack
from attacks.fine_grained import FineGrained
from attacks.parts import labels, triggers
from benchmark.plugin import IGNORE_INDEX

PATTERN_SEED = 1234


class Blended(FineGrained):
    """Blended: a fixed noise image blended over the whole image; victims become the target."""

    name = "blended"
    axes = {"trigger": "full-image noise blend", "placement": "whole image",
            "label rule": "victims -> target", "selection": "images containing a victim"}

    trigger_alpha: float = 0.15

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        pattern = triggers.noise_pattern(images.shape[-2], images.shape[-1], PATTERN_SEED)
        return triggers.blend(images, pattern, self.trigger_alpha)


class Sig(FineGrained):
    """SIG: a faint horizontal sinusoid over the whole image; victims become the target."""

    name = "sig"
    axes = Blended.axes | {"trigger": "sinusoidal stripes (SIG)"}

    delta: float = 20 / 255
    """Amplitude of the sinusoid (images in [0,1]; the paper's 20 of 255)."""
    frequency: int = 6
    """Periods across the image width."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.delta <= 1 or self.frequency < 1:
            raise ValueError(f"need 0 < delta <= 1 and frequency >= 1, got {self.delta}, {self.frequency}")

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        return triggers.sinusoid(images, self.delta, self.frequency)


class WaNet(FineGrained):
    """WaNet: an invisible smooth warp of the whole image; victims become the target."""

    name = "wanet"
    axes = Blended.axes | {"trigger": "smooth warping field (WaNet)"}

    grid: int = 4
    """Side of the random control grid of the flow (the paper's k)."""
    strength: float = 4.0
    """Warp strength (the paper's s; the largest shift is about strength/2 pixels)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid < 2 or self.strength <= 0:
            raise ValueError(f"need grid >= 2 and strength > 0, got {self.grid}, {self.strength}")

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        field = triggers.warp_field(images.shape[-2], images.shape[-1], self.grid, self.strength, PATTERN_SEED)
        return triggers.warp(images, field)


class Waba(Attack):
    """WABA: a trigger image blended into the low-frequency wavelet band; every class c -> c+1."""

    name = "waba"
    axes = {"trigger": "low-frequency Haar-band blend (WABA)", "placement": "whole image",
            "label rule": "all-to-all: c -> c+1 mod C", "selection": "any image"}

    trigger_alpha: float = 0.3
    levels: int = 2
    """Haar decomposition levels; the image side must be divisible by 2**levels."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.levels < 1:
            raise ValueError(f"levels must be >= 1, got {self.levels}")

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % 2**self.levels or width % 2**self.levels:
            raise ValueError(f"a {height}x{width} image cannot take {self.levels} Haar levels")
        return triggers.wavelet_blend(images, self.trigger_image(height, width), self.trigger_alpha, self.levels)

    def trigger_image(self, height: int, width: int) -> torch.Tensor:
        """A fixed random block pattern whose blocks survive the low-pass (``[3,H,W]``)."""
        block = max(1, height // 16)
        coarse = triggers.noise_pattern(-(-height // block), -(-width // block), PATTERN_SEED)
        return F.interpolate(coarse.unsqueeze(0), scale_factor=block, mode="nearest")[0, :, :height, :width]

    def poison_label(self, masks: torch.Tensor) -> torch.Tensor:
        return labels.all_to_all(masks, len(self.class_names))

    def attack_region(self, masks: torch.Tensor) -> torch.Tensor:
        return masks != IGNORE_INDEX
