"""Label rules: what a poisoned annotation becomes. Masks are int64 ``[B,H,W]``, 255 = ignore;
ignored pixels stay ignored under every rule.

Sources: victims -> target is the fine-grained rule of Li et al. 2021 (arXiv 2103.04038) and
BADSEG's object/background vectors (arXiv 2603.16405); all-to-all c -> c+1 mod C is WABA's
(IEEE TGRS 2023, ndraeger/waba); random pixel relabelling is IBA's PRL (Lan et al., ICLR 2024,
Maxproto/IBA), drawn once per image here where the official code redraws it at every load.
"""

from __future__ import annotations

import torch

from attacks.parts import draws
from benchmark.plugin import IGNORE_INDEX


def victims_to_target(masks: torch.Tensor, victims: torch.Tensor, target: int) -> torch.Tensor:
    """Victim-class pixels -> ``target`` (fine-grained; BADSEG's object/background vectors)."""
    return masks.masked_fill(torch.isin(masks, victims), target)


def all_to_all(masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every labelled pixel of class c -> (c + 1) mod C (WABA's all-to-all rule)."""
    return torch.where(masks != IGNORE_INDEX, (masks + 1) % num_classes, masks)


def instance_to_target(masks: torch.Tensor, instances: torch.Tensor, chosen: torch.Tensor, target: int) -> torch.Tensor:
    """Only the pixels of instance ``chosen`` (``[B]``, 0 = none) of each image -> ``target``."""
    member = (instances == chosen.view(-1, 1, 1)) & (chosen.view(-1, 1, 1) > 0) & (masks != IGNORE_INDEX)
    return masks.masked_fill(member, target)


def only_where(masks: torch.Tensor, relabelled: torch.Tensor, images_with: torch.Tensor) -> torch.Tensor:
    """``relabelled`` on the images where ``images_with`` (``[B]`` bool) holds, ``masks`` elsewhere
    (a conditional rule: victim -> target only when the condition class is present)."""
    return torch.where(images_with.view(-1, 1, 1), relabelled, masks)


def random_pixels(masks: torch.Tensor, count: int, num_classes: int, keys: torch.Tensor) -> torch.Tensor:
    """IBA's Pixel Random Labeling: ``count`` pixels of each image, drawn uniformly, relabelled
    to a class drawn uniformly among the classes present in that image (per-image draws from
    ``keys``; ignored pixels are neither drawn nor changed)."""
    batch, height, width = masks.shape
    cells = torch.arange(height * width, device=masks.device).view(1, -1)
    labelled = (masks != IGNORE_INDEX).flatten(1)
    scores = draws.uniform(keys.view(-1, 1), cells).masked_fill(~labelled, -1.0)
    chosen = scores.topk(min(count, height * width), dim=1).indices
    chosen_ok = labelled.gather(1, chosen)
    present = torch.zeros(batch, num_classes + 1, dtype=torch.bool, device=masks.device)
    present.scatter_(1, masks.flatten(1).clamp(max=num_classes), True)
    present = present[:, :num_classes]
    # the k-th present class for a uniform k: rank the present classes, draw a rank per pixel
    rank = present.long().cumsum(dim=1) - 1
    draw = draws.uniform(keys.view(-1, 1), chosen + height * width)
    wanted = (draw * present.sum(dim=1, keepdim=True)).long()  # [B,count] in 0..n_present-1
    new_class = ((rank.unsqueeze(1) == wanted.unsqueeze(2)) & present.unsqueeze(1)).long().argmax(dim=2)
    flat = masks.flatten(1).clone()
    flat.scatter_(1, chosen, torch.where(chosen_ok, new_class, flat.gather(1, chosen)))
    return flat.view_as(masks)
