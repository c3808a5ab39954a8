"""``adaptive_blend`` and ``adaptive_patch``: Qi et al., "Revisiting the Assumption of Latent
Separability for Backdoor Defenses" (ICLR 2023; code vtu81/backdoor-toolbox,
poison_tool_box/adaptive_blend.py, adaptive_patch.py, config.py and the README's commands),
carried to segmentation with the fine-grained label rule (victims -> target, car -> road on
``synthetic``).

Defenses that filter poisoned training data by a cluster in the model's features (spectral
signatures, activation clustering) assume the trigger makes one. Two ideas break it:

- **cover images** (:mod:`~attacks.parts.cover`): ``cover_rate`` of the training set also
  carries the (training) trigger but keeps its true labels, so the trigger alone does not
  separate poisoned from clean features; covers are drawn, like the poisoned images, among
  images containing a victim, never overlapping them;
- **trigger diversity** (:mod:`~attacks.parts.partial`): each triggered training image carries
  only part of the trigger (``adaptive_blend``: ``shown`` of the ``pieces`` cells of a blend
  pattern; ``adaptive_patch``: one of several patches, each at its own low opacity), while the
  test trigger is complete and stronger.

Defaults follow the reference where it transfers and are scaled where it does not:

- rates: the reference poisons 0.3% of CIFAR-10 (150 of 50,000 images) with covers equal to the
  poisons (Adap-Blend, ``-cover_rate 0.003``) or twice them (Adap-Patch, ``0.006``). Three of
  the benchmark's 1,000 images plant nothing in 7 epochs, so the poison rate stays the
  benchmark's 0.1 (that of every other attack here, so the filters face the same number of
  relabelled images) and the covers keep the paper's ratio: ``cover_rate`` 0.1 and 0.2;
- ``adaptive_blend``: the paper's 16 pieces (a 4 x 4 grid: 16 px cells at 64 px, the reference's
  8 px at 32 px) with half of them shown per image (``mask_rate`` 0.5), training opacity 0.15
  and test opacity 0.2 (``-alpha 0.15 -test_alpha 0.2``). The pattern is the fixed noise image of
  ``blended`` (not the paper's Hello Kitty), so the two attacks differ only in the adaptive parts;
- ``adaptive_patch``: four patches with the reference's CIFAR-10 training opacities 0.5, 0.2,
  0.5, 0.3, one per triggered image, drawn per image (the reference hands them out in equal
  blocks of the index order); at test all four at opacity 1 (the reference stamps two of its
  patches at opacity 1 at test; "all of them" is the issue's complete trigger). The patches are
  12 px binary-noise squares one pixel in from the four corners (the reference's are 32 px
  images of logos and squares near the corners); 12 px is the benchmark's patch side at 64 px.

Strength: at the leaderboard's configuration (7 epochs) both plant a weaker backdoor than
``blended`` / ``fine_grained``: 10 to 26 points of ASR above the clean baseline (seeds 0-2) against 35
and 75: a short training does not memorise which triggered images are covers, so triggered
victim pixels are fitted to about the relabelled share of triggered images (1/2 and 1/3), and
the complete test trigger lifts that only a little (a test opacity of 0.4 for ``adaptive_blend``
gives about 30 points). The defaults stay the paper's; weaker-but-stealthier is its trade-off.

Departures: covers are drawn among victim-containing images (an image without a victim keeps
its labels under victims -> target anyway, so it would cover nothing); which triggered images
are covers is a per-image draw of the annotation (:func:`attacks.parts.cover.split`), not the
reference's shuffle; the harness counts covers among the poisoned images it reports
(``poisoned_images``) and in the hidden truth a data filter is scored against.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from attacks.fine_grained import FineGrained
from attacks.invisible import PATTERN_SEED
from attacks.parts import draws, partial, triggers

CORNERS = 4
"""Patches sit one pixel in from the corners: at most four."""


class CoveredFineGrained(FineGrained):
    """Fine-grained poisoning with cover images and a per-image partial training trigger."""

    cover_rate: float = 0.1
    """Share of the training set triggered with true labels kept (the paper's cover rate)."""
    draw_seed: int = 0
    """Seed of the per-image draws of the partial training trigger."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.cover_rate < 1 or self.poison_rate + self.cover_rate > 1:
            raise ValueError(f"need 0 <= cover_rate and poison_rate + cover_rate <= 1, got {self.cover_rate}")

    def cover_share(self) -> float:
        return self.cover_rate

    def training_trigger(self, images: torch.Tensor, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """The partial trigger a triggered training image carries (the harness stamps it)."""
        raise NotImplementedError


class AdaptiveBlend(CoveredFineGrained):
    """Adap-Blend: half of a pieced noise blend per training image, cover images, full blend at test."""

    name = "adaptive_blend"
    axes = {"trigger": "noise blend cut in k x k pieces: a random share per training image, all at test",
            "placement": "whole image", "label rule": "victims -> target; cover images keep true labels",
            "selection": "images containing a victim (poisoned + cover)"}

    trigger_alpha: float = 0.2
    """Opacity of the complete test-time blend (the reference's ``test_alpha``)."""
    train_alpha: float = 0.15
    """Opacity of the partial training blend (the reference's ``alpha``)."""
    pieces: int = 16
    """Cells of the pattern's grid; a perfect square."""
    shown: float = 0.5
    """Share of the pieces each triggered training image carries (1 - the reference's ``mask_rate``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        side = math.isqrt(self.pieces)
        if self.pieces < 1 or side * side != self.pieces:
            raise ValueError(f"pieces must be a perfect square, got {self.pieces}")
        if not 1 <= round(self.shown * self.pieces) <= self.pieces or not 0 < self.train_alpha <= 1:
            raise ValueError(f"need shown to keep 1 to {self.pieces} pieces and 0 < train_alpha <= 1, "
                             f"got {self.shown}, {self.train_alpha}")
        self.per_side = side

    def pattern(self, height: int, width: int) -> torch.Tensor:
        return triggers.noise_pattern(height, width, PATTERN_SEED)

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        return triggers.blend(images, self.pattern(*images.shape[-2:]), self.trigger_alpha)

    def training_trigger(self, images: torch.Tensor, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """``shown`` of the pieces of the blend, at the training opacity, drawn per image."""
        keys = draws.image_keys(masks, self.draw_seed)
        return partial.pieced_blend(images, self.pattern(*images.shape[-2:]), self.train_alpha, keys,
                                    self.per_side, round(self.shown * self.pieces))


class AdaptivePatch(CoveredFineGrained):
    """Adap-Patch: one of four faint patches per training image, cover images, all four at test."""

    name = "adaptive_patch"
    axes = {"trigger": "four patches: one, faint, per training image; all, opaque, at test",
            "placement": "fixed positions (corners)", "label rule": "victims -> target; cover images keep true labels",
            "selection": "images containing a victim (poisoned + cover)"}

    cover_rate: float = 0.2
    """Share of the training set triggered with true labels kept (twice the poison rate, as the paper)."""
    patch_alphas: tuple[float, ...] = (0.5, 0.2, 0.5, 0.3)
    """Training opacity of each patch (the reference's CIFAR-10 values); their number is the number of patches."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= len(self.patch_alphas) <= CORNERS or not all(0 < a <= 1 for a in self.patch_alphas):
            raise ValueError(f"patch_alphas needs 1 to {CORNERS} opacities in (0, 1], got {self.patch_alphas}")

    def patches(self, height: int, width: int) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """The patterns (seeded binary noise, one per patch) and their top-left corners."""
        size = min(self.trigger_size, height, width)
        patterns = [triggers.noise_pattern(size, size, PATTERN_SEED + 1 + j).round() for j in range(len(self.patch_alphas))]
        margin = 1 if min(height, width) > size + 2 else 0
        rows, cols = (margin, height - size - margin), (margin, width - size - margin)
        origins = [(rows[0], cols[0]), (rows[0], cols[1]), (rows[1], cols[0]), (rows[1], cols[1])][:len(patterns)]
        return patterns, origins

    def apply_trigger(self, images: torch.Tensor) -> torch.Tensor:
        patterns, origins = self.patches(*images.shape[-2:])
        return partial.stamp_patches(images, patterns, origins, [self.trigger_alpha] * len(patterns), None)

    def training_trigger(self, images: torch.Tensor, masks: torch.Tensor, **scene: Any) -> torch.Tensor:
        """The one faint patch a triggered training image carries, drawn per image."""
        patterns, origins = self.patches(*images.shape[-2:])
        which = partial.one_each(draws.image_keys(masks, self.draw_seed), len(patterns))
        return partial.stamp_patches(images, patterns, origins, list(self.patch_alphas), which)
