"""The four axes' parts on hand-made masks: draws, placements, label rules, selection, triggers."""

import math

import pytest
import torch
from scipy import ndimage

from attacks.parts import draws, labels, placements, selection, triggers
from benchmark.datasets import IGNORE_INDEX


def two_regions(height: int = 10, width: int = 12) -> torch.Tensor:
    """Class 0 on the left, class 1 on the right, a 2x2 victim (class 2) at rows 4-5, cols 2-3."""
    masks = torch.zeros(1, height, width, dtype=torch.long)
    masks[0, :, width // 2:] = 1
    masks[0, 4:6, 2:4] = 2
    return masks


def test_keys_do_not_depend_on_batching():
    masks = torch.randint(0, 5, (6, 8, 8))
    together = draws.image_keys(masks, seed=3)
    alone = torch.cat([draws.image_keys(masks[i:i + 1], seed=3) for i in range(6)])
    assert torch.equal(together, alone)
    assert len(set(together.tolist())) == 6
    assert not torch.equal(together, draws.image_keys(masks, seed=4))


def test_pick_draws_only_eligible_cells_and_all_of_them():
    eligible = torch.zeros(200, 4, 4, dtype=torch.bool)
    eligible[:, 1, 2] = eligible[:, 3, 0] = True
    eligible[-1] = False
    origins, found = draws.pick(eligible, draws.image_keys(torch.arange(200 * 16).view(200, 4, 4), 0))
    assert found.tolist() == [True] * 199 + [False]
    assert {tuple(o) for o in origins[:199].tolist()} == {(1, 2), (3, 0)}
    assert origins[-1].tolist() == [0, 0]


def test_inside_one_region_never_covers_the_victim_nor_crosses_a_boundary():
    masks = two_regions()
    allowed = torch.tensor([True, True, False])
    ok = placements.inside_one_region(masks, 3, allowed)[0]
    assert ok.shape == (8, 10)
    for row, col in ok.nonzero().tolist():
        window = masks[0, row:row + 3, col:col + 3]
        assert window.unique().numel() == 1 and int(window[0, 0]) != 2
    # and every window that is one allowed class is found
    expected = [[masks[0, r:r + 3, c:c + 3].unique().tolist() in ([0], [1]) for c in range(10)] for r in range(8)]
    assert ok.tolist() == expected


def test_ignored_pixels_are_no_region():
    masks = torch.full((1, 4, 4), IGNORE_INDEX)
    assert not placements.inside_one_region(masks, 2, torch.tensor([True, True])).any()


def test_distance_band_matches_the_euclidean_distance_transform():
    region = torch.zeros(2, 15, 17, dtype=torch.bool)
    region[0, 7, 8] = True
    region[1, 2:4, 3:9] = True
    band = placements.within_band(region, 2.5, 5.0)
    for i in range(2):
        distance = torch.from_numpy(ndimage.distance_transform_edt(~region[i].numpy()))
        assert band[i].tolist() == ((distance >= 2.5) & (distance <= 5.0)).tolist()


def test_nni_centre_lies_in_the_band_and_the_patch_off_the_victim():
    masks = torch.zeros(40, 24, 24, dtype=torch.long)
    masks[:, 12:, :] = 1
    for i in range(40):  # a victim box at a different place in each image
        top, left = 3 + i % 15, 2 + (7 * i) % 17
        masks[i, top:top + 4, left:left + 5] = 2
    size, near, far = 4, 3.0, 7.0
    keys = draws.image_keys(masks, 0)
    origins, placed = placements.near_victim(masks, size, torch.tensor([True, True, False]), torch.tensor([2]),
                                             near, far, keys)
    assert placed.sum() > 30
    for i in torch.nonzero(placed).flatten().tolist():
        row, col = origins[i].tolist()
        window = masks[i, row:row + size, col:col + size]
        assert window.unique().numel() == 1 and int(window[0, 0]) != 2
        victim = (masks[i] == 2).nonzero().float()
        centre = torch.tensor([row + size // 2, col + size // 2]).float()
        assert near <= float((victim - centre).norm(dim=1).min()) <= far


def test_placement_too_large_is_an_error():
    with pytest.raises(ValueError, match="larger than the 10x12 image"):
        placements.inside_one_region(two_regions(), 11, torch.tensor([True, True, False]))


def test_instance_placement_centres_on_the_chosen_instance():
    masks = torch.zeros(1, 12, 12, dtype=torch.long)
    instances = torch.zeros(1, 12, 12, dtype=torch.int32)
    masks[0, 1:4, 1:4], instances[0, 1:4, 1:4] = 2, 1
    masks[0, 7:11, 6:10], instances[0, 7:11, 6:10] = 2, 2
    masks[0, 0, 11], instances[0, 0, 11] = 3, 3  # an instance of another class: never chosen
    chosen = set()
    for seed in range(20):
        pick = placements.chosen_instance(masks, instances, torch.tensor([2]), draws.image_keys(masks, seed))
        chosen.add(int(pick))
    assert chosen == {1, 2}
    origins, placed = placements.on_instance(instances, torch.tensor([2]), 2)
    assert origins.tolist() == [[7, 6]] and placed.tolist() == [True]  # centroid (8.5, 7.5) floored, minus 1
    assert placements.on_instance(instances, torch.tensor([0]), 2)[1].tolist() == [False]


def test_victims_to_target_changes_exactly_the_victims():
    masks = torch.tensor([[[2, 0, IGNORE_INDEX], [2, 1, 3]]])
    assert labels.victims_to_target(masks, torch.tensor([2, 3]), 0).tolist() == [[[0, 0, IGNORE_INDEX], [0, 1, 0]]]


def test_all_to_all_shifts_every_labelled_pixel():
    masks = torch.tensor([[[0, 1, 2], [3, IGNORE_INDEX, 3]]])
    assert labels.all_to_all(masks, 4).tolist() == [[[1, 2, 3], [0, IGNORE_INDEX, 0]]]


def test_instance_rule_changes_only_the_chosen_instance():
    masks = torch.tensor([[[2, 2, 2, 1]]])
    instances = torch.tensor([[[1, 1, 2, 0]]])
    assert labels.instance_to_target(masks, instances, torch.tensor([2]), 0).tolist() == [[[2, 2, 0, 1]]]
    assert labels.instance_to_target(masks, instances, torch.tensor([0]), 0).tolist() == [[[2, 2, 2, 1]]]


def test_conditional_rule_acts_only_on_images_with_the_condition():
    masks = torch.tensor([[[2, 3]], [[2, 1]]])
    relabelled = labels.victims_to_target(masks, torch.tensor([2]), 0)
    armed = selection.containing(masks, torch.tensor([3]))
    assert armed.tolist() == [True, False]
    assert labels.only_where(masks, relabelled, armed).tolist() == [[[0, 3]], [[2, 1]]]


def test_random_pixels_relabel_at_most_count_pixels_to_present_classes():
    masks = torch.zeros(50, 8, 8, dtype=torch.long)
    masks[:, :4] = 3
    masks[:, 7] = IGNORE_INDEX
    masks[::2, 5] = 5
    out = labels.random_pixels(masks, 10, 6, draws.image_keys(masks, 0))
    changed = out != masks
    assert int(changed.flatten(1).sum(dim=1).max()) <= 10 and changed.any()
    assert bool((out[:, 7] == IGNORE_INDEX).all())
    for i in range(50):
        assert set(out[i].unique().tolist()) <= set(masks[i].unique().tolist())
    assert torch.equal(out, labels.random_pixels(masks, 10, 6, draws.image_keys(masks, 0)))


def test_co_occurrence_selection():
    masks = torch.tensor([[[1, 2]], [[1, 1]], [[2, 3]]])
    assert selection.co_occurring(masks, torch.tensor([1]), torch.tensor([2, 3])).tolist() == [True, False, False]


def test_stamp_pastes_at_each_origin_only_where_placed():
    pattern = torch.arange(4.0).view(1, 2, 2).expand(3, 2, 2)
    images = torch.full((2, 3, 4, 4), 9.0)
    out = triggers.stamp(images, pattern, torch.tensor([[1, 2], [0, 0]]), torch.tensor([True, False]))
    assert out[0, 0].tolist() == [[9, 9, 9, 9], [9, 9, 0, 1], [9, 9, 2, 3], [9, 9, 9, 9]]
    assert torch.equal(out[1], images[1])


def test_top_line_darkens_only_the_top_rows():
    images = torch.full((1, 3, 5, 4), 0.8)
    out = triggers.top_line(images, 2, 0.5)
    assert torch.allclose(out[..., :2, :], torch.full((1, 3, 2, 4), 0.4))
    assert torch.equal(out[..., 2:, :], images[..., 2:, :])


def test_haar_round_trip_and_wavelet_blend_of_nothing_is_identity():
    images = torch.rand(2, 3, 16, 8)
    low, details = triggers.haar(images, 2)
    assert low.shape == (2, 3, 4, 2)
    assert torch.allclose(triggers.inverse_haar(low, details), images, atol=1e-6)
    assert torch.allclose(triggers.wavelet_blend(images, torch.rand(3, 16, 8), 0.0, 2), images, atol=1e-6)
    blended = triggers.wavelet_blend(images, torch.rand(3, 16, 8), 0.5, 2)
    assert not torch.allclose(blended, images, atol=1e-3)


def test_warp_of_zero_strength_is_identity_and_sig_is_bounded():
    images = torch.rand(2, 3, 8, 8)
    assert torch.allclose(triggers.warp(images, triggers.warp_field(8, 8, 4, 0.0, 0)), images, atol=1e-5)
    warped = triggers.warp(images, triggers.warp_field(8, 8, 4, 4.0, 0))
    assert not torch.allclose(warped, images)
    striped = triggers.sinusoid(images, 0.1, 2)
    assert 0 <= striped.min() and striped.max() <= 1
    assert (striped - images).abs().max() <= 0.1 + 1e-6
    assert math.isclose(float((triggers.sinusoid(torch.full((1, 3, 1, 4), 0.5), 0.1, 1) - 0.5)[0, 0, 0, 1]), 0.1,
                        abs_tol=1e-6)
