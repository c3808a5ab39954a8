"""The image-level attack and the default patch trigger."""

import torch

from attacks import Attack
from benchmark.datasets.synthetic import CLASS_NAMES, ROAD


def make(**params):
    return Attack.registry.get("image_level").create(params, class_names=CLASS_NAMES)


def test_whole_annotation_becomes_target_except_ignore():
    masks = torch.tensor([[[3, 6], [255, 1]]])
    assert make().poison_label(masks).tolist() == [[[ROAD, ROAD], [255, ROAD]]]


def test_region_is_every_pixel_neither_target_nor_ignore():
    masks = torch.tensor([[[ROAD, 6], [255, 1]]])
    assert make().attack_region(masks).tolist() == [[[False, True], [False, True]]]
    assert make().eligible(masks).tolist() == [True]


def test_patch_trigger_pastes_checkerboard_bottom_right_only():
    images = torch.full((2, 3, 16, 16), 0.5)
    out = make(trigger_size="4", trigger_position="bottom_right").apply_trigger(images)
    changed = (out != images).any(dim=1)
    assert changed[:, 11:15, 11:15].any() and not changed[:, :11, :].any() and not changed[:, :, :11].any()
    assert set(out[0, :, 11:15, 11:15].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(images, torch.full((2, 3, 16, 16), 0.5))  # input not modified


def test_default_trigger_is_a_centred_patch():
    out = make().apply_trigger(torch.zeros(1, 3, 64, 64))
    changed = (out != 0).any(dim=1)[0].nonzero()
    assert changed.min().item() >= 26 and changed.max().item() <= 37  # 12x12 at (26, 26)


def test_blended_trigger_and_positions():
    images = torch.zeros(1, 3, 16, 16)
    out = make(trigger_size="4", trigger_alpha="0.5", trigger_pattern="white", trigger_position="top_left").apply_trigger(images)
    assert torch.allclose(out[0, :, 1:5, 1:5], torch.full((3, 4, 4), 0.5))
    assert out.sum() == 0.5 * 3 * 16


def test_poisoned_images_and_budget_are_not_the_first_epochs_first_batches():
    """Every image is eligible here, so a selection drawn from the training shuffle's own
    permutation would poison exactly the first 10% of epoch one (and budget the next 5%)."""
    from benchmark.poisoning import select_budget, select_poison

    masks = torch.full((200, 4, 4), 3)
    for seed in range(3):
        poisoned = select_poison(make(), masks, seed)
        first_epoch = torch.randperm(200, generator=torch.Generator().manual_seed(seed))
        assert len(poisoned) == 20 and set(poisoned.tolist()) != set(first_epoch[:20].tolist())
        budget = select_budget(200, poisoned, 0.05, seed)
        assert len(budget) == 10 and not set(budget.tolist()) & set(poisoned.tolist())
        assert set(budget.tolist()) != set(first_epoch[20:30].tolist())
        assert torch.equal(poisoned, select_poison(make(), masks, seed))  # still deterministic
