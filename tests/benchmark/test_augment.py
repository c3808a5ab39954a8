"""Random scale / crop / flip on the device: labels stay labels, borders are ignored, the
trigger and its poisoned labels move together, and the draws are fixed by the seed."""

from __future__ import annotations

import pytest
import torch

from benchmark.augment import SCALE_RANGE, RandomCrops
from benchmark.datasets import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = 3


def draw(scale: float, top: float = 0.0, left: float = 0.0, flip: bool = False, n: int = 1) -> torch.Tensor:
    """Draws that give ``scale`` and the window at fractions ``top``/``left`` of its free range."""
    low, high = SCALE_RANGE
    return torch.tensor([[(scale - low) / (high - low), top, left, 0.0 if flip else 1.0]] * n)


def triggered_batch(n: int = 4, size: tuple[int, int] = (24, 40)) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scenes whose mask holds labels 0-2, with a white 6x6 trigger labelled TARGET at
    a different place in each image (a poisoned row as the runner swaps it in)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, *size, generator=generator) * 0.2  # darker than a quarter of the trigger
    masks = torch.randint(0, 3, (n, *size), generator=generator)
    for i in range(n):
        top, left = 2 + 3 * i, 4 + 7 * i
        images[i, :, top:top + 6, left:left + 6] = 1.0
        masks[i, top:top + 6, left:left + 6] = TARGET
    return images, masks


def test_scale_one_full_crop_without_flip_is_the_identity() -> None:
    images, masks = triggered_batch()
    out_images, out_masks = RandomCrops((24, 40))(images, masks, draw(1.0, n=4))
    torch.testing.assert_close(out_images, images)
    assert torch.equal(out_masks, masks)


def test_flip_mirrors_image_and_mask_together() -> None:
    images, masks = triggered_batch()
    out_images, out_masks = RandomCrops((24, 40))(images, masks, draw(1.0, flip=True, n=4))
    torch.testing.assert_close(out_images, images.flip(-1))
    assert torch.equal(out_masks, masks.flip(-1))


def test_an_integer_window_is_an_exact_crop() -> None:
    images, masks = triggered_batch()
    # scale 1 on 24x40 with a 16x24 crop: free range 8 x 16; fractions 0.5 / 0.25 -> offset (4, 4)
    out_images, out_masks = RandomCrops((16, 24))(images, masks, draw(1.0, 0.5, 0.25, n=4))
    torch.testing.assert_close(out_images, images[:, :, 4:20, 4:28])
    assert torch.equal(out_masks, masks[:, 4:20, 4:28])


def test_masks_are_sampled_nearest_and_borders_are_ignored() -> None:
    images, masks = triggered_batch()
    draws = torch.rand(4, 4, generator=torch.Generator().manual_seed(1))
    draws[0, 0] = 0.0  # scale 0.5: a 12x20 image in a 20x32 crop, the rest padding
    out_images, out_masks = RandomCrops((20, 32))(images, masks, draws)
    assert set(out_masks.unique().tolist()) <= {0, 1, 2, TARGET, IGNORE_INDEX}
    padding = torch.ones(20, 32, dtype=torch.bool)
    padding[:12, :20] = False
    assert (out_masks[0][padding] == IGNORE_INDEX).all() and (out_masks[0][~padding] != IGNORE_INDEX).all()
    assert (out_images[0][:, padding] == 0).all()


def test_the_trigger_and_its_labels_travel_with_the_crop() -> None:
    """At any scale, crop and flip: a pixel labelled TARGET (its nearest source pixel is in the
    trigger) takes at least a quarter of its colour from the trigger, and a pixel wholly inside
    the trigger is labelled TARGET."""
    images, masks = triggered_batch()
    for seed in range(5):
        draws = torch.rand(4, 4, generator=torch.Generator().manual_seed(seed))
        out_images, out_masks = RandomCrops((16, 24))(images, masks, draws)
        target = out_masks == TARGET
        assert target.any()
        brightness = out_images.min(dim=1).values
        assert (brightness[target] > 0.2).all()  # brighter than any scene pixel
        assert (out_masks[brightness > 0.999] == TARGET).all()


def test_draws_are_fixed_by_the_seed() -> None:
    crops = RandomCrops((8, 8))
    cpu = torch.device("cpu")
    assert torch.equal(crops.draws(3, 4, 7, cpu), crops.draws(3, 4, 7, cpu))
    assert not torch.equal(crops.draws(3, 4, 7, cpu), crops.draws(3, 4, 8, cpu))
