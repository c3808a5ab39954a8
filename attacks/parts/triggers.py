"""Triggers: how the pixels of a triggered image change. Images are float ``[B,3,H,W]`` in [0,1].

Each function returns new images (the input is not modified) and is deterministic: fixed
patterns are drawn from a private generator seeded by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def stamp(images: torch.Tensor, pattern: torch.Tensor, origins: torch.Tensor, placed: torch.Tensor,
          alpha: float = 1.0) -> torch.Tensor:
    """Blend the ``[3,s,s]`` ``pattern`` at each image's top-left ``origins`` (``[B,2]``), on the
    images where ``placed`` (``[B]`` bool) holds; one masked blend for the whole batch."""
    size = pattern.shape[-1]
    height, width = images.shape[-2:]
    rows = torch.arange(height, device=images.device).view(1, -1, 1) - origins[:, 0].view(-1, 1, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, -1) - origins[:, 1].view(-1, 1, 1)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size) & placed.view(-1, 1, 1)
    patch = pattern.to(images)[:, rows.clamp(0, size - 1), cols.clamp(0, size - 1)].transpose(0, 1)
    return torch.where(inside.unsqueeze(1), images * (1 - alpha) + patch * alpha, images)


def top_line(images: torch.Tensor, rows: int, alpha: float) -> torch.Tensor:
    """The seed paper's trigger (Li et al. 2021): a black line across the top ``rows`` rows,
    blended with weight ``alpha`` (1 paints it black)."""
    out = images.clone()
    out[..., :rows, :] *= 1 - alpha
    return out


def noise_pattern(height: int, width: int, seed: int) -> torch.Tensor:
    """A fixed ``[3,H,W]`` uniform noise image (the Blended attack's key pattern)."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float) -> torch.Tensor:
    """Full-image blend ``(1 - alpha) x + alpha p`` (Chen et al. 2017, "Blended")."""
    return images * (1 - alpha) + pattern.to(images) * alpha


def sinusoid(images: torch.Tensor, delta: float, frequency: int) -> torch.Tensor:
    """SIG's horizontal signal ``x + delta sin(2 pi j f / W)`` (Barni et al. 2019), clipped to [0,1]."""
    width = images.shape[-1]
    columns = torch.arange(width, device=images.device, dtype=images.dtype)
    return (images + delta * torch.sin(2 * math.pi * columns * frequency / width)).clamp(0, 1)


def warp_field(height: int, width: int, grid: int, strength: float, seed: int) -> torch.Tensor:
    """WaNet's fixed sampling grid ``[1,H,W,2]`` (Nguyen & Tran 2021): a random ``grid x grid``
    field in [-1,1], normalised by its mean magnitude, upsampled bicubically and added, scaled
    by ``strength / H``, to the identity grid (clipped to [-1,1])."""
    noise = torch.rand(1, 2, grid, grid, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    noise = noise / noise.abs().mean()
    flow = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    identity = torch.stack([xs, ys], dim=-1).unsqueeze(0)
    return (identity + strength * flow / height).clamp(-1, 1)


def warp(images: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Resample ``images`` along a :func:`warp_field`."""
    grid = field.to(images).expand(images.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid, align_corners=True)


def haar(images: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Orthonormal 2-D Haar DWT: the low band after ``levels`` levels and each level's
    ``[B,3,3,h,w]`` detail bands (finest first). Sides must be divisible by ``2**levels``."""
    low, details = images, []
    for _ in range(levels):
        a, b = low[..., 0::2, 0::2], low[..., 0::2, 1::2]
        c, d = low[..., 1::2, 0::2], low[..., 1::2, 1::2]
        low = (a + b + c + d) / 2
        details.append(torch.stack([a - b + c - d, a + b - c - d, a - b - c + d], dim=2) / 2)
    return low, details


def inverse_haar(low: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`haar`."""
    for detail in reversed(details):
        h, v, d = detail.unbind(dim=2)
        out = low.new_empty(*low.shape[:-2], low.shape[-2] * 2, low.shape[-1] * 2)
        out[..., 0::2, 0::2] = (low + h + v + d) / 2
        out[..., 0::2, 1::2] = (low - h + v - d) / 2
        out[..., 1::2, 0::2] = (low + h - v - d) / 2
        out[..., 1::2, 1::2] = (low - h - v + d) / 2
        low = out
    return low


def wavelet_blend(images: torch.Tensor, pattern: torch.Tensor, alpha: float, levels: int) -> torch.Tensor:
    """WABA's trigger (Dräger et al. 2023): blend the low-frequency Haar band of a trigger image
    into the image's, ``(1 - alpha) LL_x + alpha LL_p``, keep the image's detail bands, invert."""
    low, details = haar(images, levels)
    pattern_low, _ = haar(pattern.to(images).unsqueeze(0), levels)
    return inverse_haar(low * (1 - alpha) + pattern_low * alpha, details).clamp(0, 1)
