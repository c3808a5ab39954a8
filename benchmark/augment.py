"""Training augmentation, batched on the device: random scale, random crop and horizontal flip.

The usual recipe of semantic segmentation training (mmsegmentation's ``RandomResize`` with a
ratio range of 0.5-2.0, ``RandomCrop``, ``RandomFlip`` p=0.5, ``Pad`` with the ignore index),
applied to a whole batch at once with one ``grid_sample`` per image tensor: every image gets
its own scale, crop window and flip, drawn up front from the seed, so training with and
without augmentation is deterministic. The image is sampled bilinearly and the mask nearest
(labels are never blended); where a scaled-down image does not fill the crop, the image is
padded with 0 and the mask with the ignore index. It runs after the poisoned rows are swapped
into the batch, so the trigger and the poisoned labels move with the crop.

Departures from mmsegmentation, for a batched, file-free pipeline: the scale is relative to the
stored image size (mmseg rescales to a fixed ``img_scale`` first; the stored size plays that
role); the crop is not redrawn when one class covers more than 75% of it (``cat_max_ratio``);
there is no photometric distortion; downscaling is bilinear without antialiasing (as
OpenCV's ``INTER_LINEAR`` resize that mmseg uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.datasets import IGNORE_INDEX

SCALE_RANGE = (0.5, 2.0)
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class RandomCrops:
    """Random scale in ``SCALE_RANGE``, a random ``crop`` (height, width) window and a
    horizontal flip with ``FLIP_PROBABILITY``, one draw per image of every training step."""

    crop: tuple[int, int]

    def draws(self, steps: int, batch_size: int, seed: int, device: torch.device) -> torch.Tensor:
        """``[steps, batch_size, 4]`` uniform draws (scale, top, left, flip), made once on the
        host from ``seed`` and moved to the device in one transfer."""
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(steps, batch_size, 4, generator=generator).to(device)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images ``[B,3,H,W]`` and int64 masks ``[B,H,W]`` -> crops ``[B,3,h,w]``, ``[B,h,w]``
        (``draws``: ``[B,4]`` uniform values from :meth:`draws`)."""
        grid = self.grid(images.shape[-2:], draws[: images.shape[0]])
        cropped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        # labels shifted by one so that the zero padding marks pixels outside the image
        shifted = F.grid_sample((masks + 1).unsqueeze(1).float(), grid, mode="nearest", padding_mode="zeros",
                                align_corners=False).squeeze(1).long()
        cropped_masks = torch.where(shifted == 0, IGNORE_INDEX, shifted - 1)
        return cropped.contiguous(memory_format=torch.channels_last), cropped_masks

    def grid(self, size: torch.Size, draws: torch.Tensor) -> torch.Tensor:
        """The sampling grid ``[B,h,w,2]`` in ``grid_sample``'s normalised source coordinates."""
        height, width = size
        crop_h, crop_w = self.crop
        low, high = SCALE_RANGE
        scale = low + (high - low) * draws[:, 0]
        # the window's corner in the scaled image; a scaled image smaller than the crop sits
        # at the top left and the rest is padding (as mmseg's Pad after RandomCrop)
        top = draws[:, 1] * (height * scale - crop_h).clamp(min=0)
        left = draws[:, 2] * (width * scale - crop_w).clamp(min=0)
        flip = draws[:, 3] < FLIP_PROBABILITY
        rows = torch.arange(crop_h, device=draws.device, dtype=torch.float32) + 0.5
        cols = torch.arange(crop_w, device=draws.device, dtype=torch.float32) + 0.5
        cols = torch.where(flip.view(-1, 1), crop_w - cols.view(1, -1), cols.view(1, -1))  # [B, w]
        source_y = (top.view(-1, 1) + rows.view(1, -1)) / scale.view(-1, 1)  # [B, h] in source pixels
        source_x = (left.view(-1, 1) + cols) / scale.view(-1, 1)  # [B, w]
        grid_y = (2 * source_y / height - 1).view(-1, crop_h, 1).expand(-1, crop_h, crop_w)
        grid_x = (2 * source_x / width - 1).view(-1, 1, crop_w).expand(-1, crop_h, crop_w)
        return torch.stack([grid_x, grid_y], dim=-1)
