"""Adap-Blend / Adap-Patch parts and attacks on hand-made masks: covers keep their labels exactly,
each triggered training image carries the configured share of the trigger, the test trigger
is complete, and the per-image draws do not depend on batching."""

import pytest
import torch

from attacks import Attack
from benchmark.plugin import BenchmarkError
from attacks.parts import cover, draws, partial
from benchmark.datasets import Split
from benchmark.datasets.synthetic import CAR, CLASS_NAMES, ROAD
from benchmark.poisoning import covers_among, poison_rows, select_poison

SIZE = 16


def scenes(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` distinct masks: road everywhere, a car block whose place and size vary."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.full((count, SIZE, SIZE), ROAD, dtype=torch.long)
    for i in range(count):
        top, left = torch.randint(0, SIZE - 4, (2,), generator=generator).tolist()
        masks[i, top:top + 2 + i % 3, left:left + 3] = CAR
    return masks


def attack(name: str, **params) -> Attack:
    return Attack.registry.get(name).create(params, class_names=CLASS_NAMES)


def test_chosen_pieces_draw_exactly_the_share_and_vary_per_image():
    keys = draws.image_keys(scenes(50), 0)
    chosen = partial.chosen_pieces(keys, 16, 8)
    assert chosen.sum(dim=1).tolist() == [8] * 50
    assert len({tuple(row) for row in chosen.tolist()}) > 40
    assert chosen.float().mean(dim=0).min() > 0.2  # every piece gets used


def test_grid_mask_tiles_the_image_into_equal_cells():
    chosen = torch.zeros(1, 16, dtype=torch.bool)
    chosen[0, 5] = True  # row 1, column 1 of the 4x4 grid
    mask = partial.grid_mask(chosen, 4, 64, 64)[0, 0]
    assert mask.sum() == 16 * 16 and mask[16:32, 16:32].all()
    full = partial.grid_mask(torch.ones(1, 9, dtype=torch.bool), 3, 10, 11)
    assert full.all()  # uneven sides still cover every pixel


def test_adaptive_blend_training_trigger_carries_exactly_the_shown_pieces():
    blend = attack("adaptive_blend")
    masks = scenes(12)
    images = torch.full((12, 3, SIZE, SIZE), 0.5)
    pattern = blend.pattern(SIZE, SIZE)
    touched = (blend.training_trigger(images, masks) - images).abs().amax(dim=1) > 1e-6  # [B,H,W]
    cells = touched.view(12, 4, 4, 4, 4).any(dim=(2, 4)).flatten(1)  # which 4x4 px cells changed
    differs = ((pattern - 0.5).abs().amax(dim=0) > 1e-6).view(4, 4, 4, 4).all(dim=3).all(dim=1).all()
    assert differs  # every cell of the pattern changes a grey image somewhere
    assert cells.sum(dim=1).tolist() == [8] * 12
    expected = blend.train_alpha * (pattern - 0.5)
    changed = blend.training_trigger(images, masks) - images
    assert torch.allclose(changed[touched.unsqueeze(1).expand_as(changed)],
                          expected.expand_as(changed)[touched.unsqueeze(1).expand_as(changed)], atol=1e-6)


def test_adaptive_blend_test_trigger_is_the_complete_stronger_blend():
    blend = attack("adaptive_blend")
    images = torch.rand(3, 3, SIZE, SIZE)
    triggered = blend.trigger(images, scenes(3))
    assert torch.allclose(triggered, images * 0.8 + blend.pattern(SIZE, SIZE) * 0.2)


def test_adaptive_patch_training_image_carries_one_faint_patch_and_test_all_opaque():
    patch = attack("adaptive_patch", trigger_size=4)
    masks = scenes(40)
    images = torch.full((40, 3, SIZE, SIZE), 0.5)
    patterns, origins = patch.patches(SIZE, SIZE)
    assert len({o for o in origins}) == 4
    trained = patch.training_trigger(images, masks)
    seen = []
    for image in trained:
        windows = [(image[:, r:r + 4, c:c + 4] - 0.5).abs().amax() > 1e-6 for r, c in origins]
        assert sum(windows) == 1
        j = windows.index(True)
        r, c = origins[j]
        alpha = patch.patch_alphas[j]
        assert torch.allclose(image[:, r:r + 4, c:c + 4], 0.5 * (1 - alpha) + patterns[j] * alpha, atol=1e-6)
        seen.append(j)
    assert set(seen) == {0, 1, 2, 3}
    tested = patch.trigger(images, masks)
    for r, c in origins:
        assert all(torch.equal(image[:, r:r + 4, c:c + 4], patterns[origins.index((r, c))]) for image in tested)


@pytest.mark.parametrize("name", ["adaptive_blend", "adaptive_patch"])
def test_training_draws_do_not_depend_on_batching_and_test_trigger_on_the_scene(name):
    chosen = attack(name, trigger_size=4)
    masks, images = scenes(10), torch.rand(10, 3, SIZE, SIZE)
    together = chosen.training_trigger(images, masks)
    alone = torch.cat([chosen.training_trigger(images[i:i + 1], masks[i:i + 1]) for i in range(10)])
    assert torch.equal(together, alone)
    reordered = chosen.training_trigger(images.flip(0), masks.flip(0)).flip(0)
    assert torch.equal(together, reordered)
    # the test trigger is the same complete trigger whatever the annotation
    assert torch.equal(chosen.trigger(images, masks), chosen.trigger(images, masks.roll(1, 0)))
    other = attack(name, trigger_size=4, draw_seed=1)
    assert not torch.equal(together, other.training_trigger(images, masks))


def test_cover_split_takes_the_count_with_the_smallest_draws():
    values = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    assert cover.split(values, 2).tolist() == [False, True, False, True, False]
    assert cover.count(30, 0.1, 0.2) == 20 and cover.count(30, 0.1, 0.0) == 0


@pytest.mark.parametrize("name, covers", [("adaptive_blend", 10), ("adaptive_patch", 20)])
def test_cover_images_keep_their_labels_exactly_and_the_rest_are_relabelled(name, covers):
    chosen = attack(name, trigger_size=4)
    masks = scenes(100)
    train = Split(torch.randint(0, 256, (100, 3, SIZE, SIZE), dtype=torch.uint8), masks)
    selected = select_poison(chosen, masks, seed=0)
    assert len(selected) == 10 + covers  # poison_rate 0.1 and the cover rate, of 100 images
    is_cover = covers_among(chosen, train, selected)
    assert int(is_cover.sum()) == covers
    rows = poison_rows(chosen, train, selected, torch.device("cpu"))
    truth = masks[selected]
    assert torch.equal(rows.masks[is_cover], truth[is_cover])
    relabelled = truth[~is_cover].masked_fill(truth[~is_cover] == CAR, ROAD)
    assert torch.equal(rows.masks[~is_cover], relabelled)
    # every selected row, cover or not, carries the (partial) training trigger
    triggered = (chosen.training_trigger(train.images[selected].float() / 255, truth).clamp(0, 1) * 255).round()
    assert torch.equal(rows.images.float(), triggered)
    assert (rows.images.float() != train.images[selected].float()).flatten(1).any(dim=1).all()


def test_attacks_without_covers_poison_as_before():
    chosen = attack("fine_grained")
    masks = scenes(50)
    train = Split(torch.randint(0, 256, (50, 3, SIZE, SIZE), dtype=torch.uint8), masks)
    selected = select_poison(chosen, masks, seed=0)
    assert len(selected) == 5 and not covers_among(chosen, train, selected).any()
    rows = poison_rows(chosen, train, selected, torch.device("cpu"))
    assert torch.equal(rows.masks, chosen.poison_label(masks[selected]))


@pytest.mark.parametrize("params, message", [
    ({"pieces": 10}, "perfect square"), ({"shown": 0.01}, "shown"), ({"cover_rate": 0.95}, "cover_rate"),
])
def test_adaptive_blend_rejects_bad_parameters(params, message):
    with pytest.raises(BenchmarkError, match=message):
        attack("adaptive_blend", **params)


def test_adaptive_patch_rejects_more_patches_than_corners():
    with pytest.raises(BenchmarkError, match="patch_alphas"):
        attack("adaptive_patch", patch_alphas=(0.5,) * 5)
