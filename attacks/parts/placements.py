"""Placements: where a square patch of side ``size`` goes, per image, from its annotation.

Each returns ``(origins [B,2] top-left row and column, placed [B] bool)``; an image where the
rule finds no position has ``placed`` False (it is neither poisoned nor counted for ASR).
Everything is batched tensor work on the masks' device: erosion is a min-pool over the
one-hot class maps, the Euclidean distance band a convolution with a disk.

Sources: the region and distance-band rules are IBA's free placement and Nearest-Neighbour
Injection (Lan et al., ICLR 2024; Maxproto/IBA), and the instance rule follows BADSEG's
instance-level attack (arXiv 2603.16405). Departures: IBA erodes a region by half the trigger
around its centre, which is the same set as requiring the whole patch inside the region used
here; the band is an exact Euclidean band computed on the device, not a host-side distance
transform (cost ~far^2 per pixel: fine at the 64-256 px of this benchmark, slow for
Cityscapes-scale bands).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attacks.parts import draws


def check_fits(size: int, masks: torch.Tensor) -> None:
    height, width = masks.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"trigger_size {size} is larger than the {height}x{width} image")


def inside_one_region(masks: torch.Tensor, size: int, allowed: torch.Tensor) -> torch.Tensor:
    """``[B,H-s+1,W-s+1]`` bool: top-left positions where the ``size`` patch lies wholly inside
    one region of a class with ``allowed[class]`` (``[C]`` bool; ignore never is) - the class
    regions eroded by the patch, as IBA erodes them by half the trigger size around its centre.
    A window is inside one region when its largest and smallest label agree: two max-pools,
    whatever the number of classes."""
    check_fits(size, masks)
    labels = masks.unsqueeze(1).float()
    largest = F.max_pool2d(labels, kernel_size=size, stride=1)[:, 0]
    smallest = -F.max_pool2d(-labels, kernel_size=size, stride=1)[:, 0]
    table = torch.cat([allowed, allowed.new_zeros(1)])  # any label beyond the classes (ignore) -> not allowed
    return (largest == smallest) & table[smallest.long().clamp(max=allowed.shape[0])]


def within_band(region: torch.Tensor, near: float, far: float) -> torch.Tensor:
    """``[B,H,W]`` bool: pixels whose Euclidean distance to the nearest ``region`` pixel lies
    in [``near``, ``far``] (a convolution with a disk of radius r dilates by exactly r)."""
    def dilated(radius: float) -> torch.Tensor:
        r = int(radius)
        offsets = torch.arange(-r, r + 1, device=region.device, dtype=torch.float32)
        disk = ((offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) <= radius**2).float()
        return F.conv2d(region.unsqueeze(1).float(), disk.view(1, 1, 2 * r + 1, 2 * r + 1), padding=r)[:, 0] > 0.5

    too_close = dilated(near - 1e-6) if near > 0 else torch.zeros_like(region, dtype=torch.bool)
    return dilated(far) & ~too_close


def centred(centre_map: torch.Tensor, size: int) -> torch.Tensor:
    """A ``[B,H,W]`` map of allowed patch *centres* as a map of top-left positions
    ``[B,H-s+1,W-s+1]`` (the centre of a patch at (i, j) is (i + s//2, j + s//2))."""
    height, width = centre_map.shape[-2:]
    half = size // 2
    return centre_map[:, half:half + height - size + 1, half:half + width - size + 1]


def fixed(batch: int, origin: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The same top-left corner on every image."""
    origins = torch.tensor(origin, device=device).expand(batch, 2)
    return origins, torch.ones(batch, dtype=torch.bool, device=device)


def free_in_region(masks: torch.Tensor, size: int, allowed: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IBA's placement: a uniformly drawn position inside one region of an ``allowed`` class."""
    return draws.pick(inside_one_region(masks, size, allowed), keys)


def near_victim(masks: torch.Tensor, size: int, allowed: torch.Tensor, victims: torch.Tensor, near: float,
                far: float, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IBA's Nearest-Neighbour Injection: as :func:`free_in_region`, with the patch centre at a
    distance in [``near``, ``far``] pixels from the nearest ``victims`` pixel."""
    band = centred(within_band(torch.isin(masks, victims), near, far), size)
    return draws.pick(inside_one_region(masks, size, allowed) & band, keys)


def chosen_instance(masks: torch.Tensor, instances: torch.Tensor, victims: torch.Tensor,
                    keys: torch.Tensor) -> torch.Tensor:
    """``[B]`` the id of one victim-class instance per image, drawn uniformly among the ids
    present (0 where there is none): every pixel scores by a hash of its instance id only."""
    candidate = torch.isin(masks, victims) & (instances > 0)
    scores = draws.uniform(keys.view(-1, 1, 1), instances.long()).masked_fill(~candidate, -1.0)
    best = scores.flatten(1).argmax(dim=1)
    chosen = instances.flatten(1).gather(1, best.view(-1, 1)).squeeze(1).long()
    return torch.where(candidate.flatten(1).any(dim=1), chosen, torch.zeros_like(chosen))


def on_instance(instances: torch.Tensor, chosen: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The patch centred on the centroid of instance ``chosen`` of each image (kept inside the image)."""
    height, width = instances.shape[-2:]
    check_fits(size, instances)
    member = (instances == chosen.view(-1, 1, 1)) & (chosen.view(-1, 1, 1) > 0)
    count = member.flatten(1).sum(dim=1).clamp(min=1)
    rows = torch.arange(height, device=instances.device).view(1, -1, 1)
    cols = torch.arange(width, device=instances.device).view(1, 1, -1)
    centre_row = (member * rows).flatten(1).sum(dim=1) // count
    centre_col = (member * cols).flatten(1).sum(dim=1) // count
    origins = torch.stack([(centre_row - size // 2).clamp(0, height - size),
                           (centre_col - size // 2).clamp(0, width - size)], dim=1)
    return origins, chosen > 0
