"""Every metric against hand-computed values (DESIGN section 5)."""

import math

import pytest
import torch

from attacks import Attack
from benchmark import metrics


def test_confusion_matrix_rows_truth_columns_prediction_skips_ignore():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    cm = metrics.confusion_matrix(pred, target, num_classes=3)
    expected = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert torch.equal(cm, expected)
    assert cm.dtype == torch.int64


def test_confusion_matrix_extra_prediction_column():
    target = torch.tensor([0, 1, 1])
    pred = torch.tensor([0, 2, 1])  # 2 = "rejected"
    cm = metrics.confusion_matrix(pred, target, num_classes=2, num_pred_classes=3)
    assert torch.equal(cm, torch.tensor([[1, 0, 0], [0, 1, 1]]))


def test_per_class_iou_and_mean_iou_by_hand():
    # class 0: TP=1, FP=0, FN=1 -> 1/2; class 1: TP=1, FP=1 (from 0), FN=1 (to 2) -> 1/3
    # class 2: TP=1, FP=1, FN=0 -> 1/2; class 3 absent everywhere -> excluded
    cm = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    iou = metrics.per_class_iou(cm)
    assert iou[:3].tolist() == pytest.approx([0.5, 1 / 3, 0.5])
    assert math.isnan(iou[3])
    assert metrics.mean_iou(cm) == pytest.approx((0.5 + 1 / 3 + 0.5) / 3)


def test_class_only_in_prediction_counts_with_iou_zero():
    cm = torch.tensor([[2, 1], [0, 0]])  # class 1 never true but predicted once
    assert metrics.per_class_iou(cm).tolist() == pytest.approx([2 / 3, 0.0])
    assert metrics.mean_iou(cm) == pytest.approx(1 / 3)


def test_rejected_column_counts_as_false_negative_only():
    # class 0: TP 2, FN 1 (rejected) -> 2/3 ; class 1: TP 1 -> 1
    cm = torch.tensor([[2, 0, 1], [0, 1, 0]])
    assert metrics.per_class_iou(cm).tolist() == pytest.approx([2 / 3, 1.0])


def test_mean_iou_empty_is_nan():
    assert math.isnan(metrics.mean_iou(torch.zeros(3, 3, dtype=torch.long)))


def test_dataset_level_pooling_not_mean_of_images():
    # image A: class 0 perfect on 1 pixel; image B: class 0 with 3 of 4 pixels right, 1 -> class 1
    pred = torch.tensor([[0, 9, 9, 9], [0, 0, 0, 1]])
    target = torch.tensor([[0, 255, 255, 255], [0, 0, 0, 0]])
    pred[pred == 9] = 0
    cm = metrics.confusion_matrix(pred, target, num_classes=2)
    # pooled: class 0 TP=4, FN=1 -> 0.8; class 1 TP=0, FP=1 -> 0
    assert metrics.per_class_iou(cm).tolist() == pytest.approx([0.8, 0.0])


def test_attack_success_rate_pooled_over_region():
    pred = torch.tensor([[3, 3, 1], [3, 0, 0]])
    region = torch.tensor([[True, True, True], [False, True, False]])
    counts = metrics.attack_success_counts(pred, region, target_class=3)
    assert counts.tolist() == [2, 4]
    assert metrics.attack_success_rate(counts) == 0.5
    assert math.isnan(metrics.attack_success_rate(torch.tensor([0, 0])))


def test_pba_target_keeps_only_the_benign_region():
    masks = torch.tensor([[0, 6, 6, 1]])
    benign = masks != 6
    assert metrics.pba_target(masks, benign).tolist() == [[0, 255, 255, 1]]


def test_whole_map_rules_have_no_benign_region_and_fine_grained_keeps_every_non_victim():
    """PBA is undefined (null) for both whole-map rules, image_level and waba (issue 25: the
    first scored the target's own pixels and reported 1.0); fine-grained scores the labelled
    non-victims."""
    masks = torch.tensor([[[0, 6, 2, 255]]])  # road, car, building, ignore
    names = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "car", "person")
    for name in ("image_level", "waba"):
        attack = Attack.registry.get(name).create(class_names=names)
        assert not attack.benign_region(masks).any(), name
    fine = Attack.registry.get("fine_grained").create(class_names=names)
    assert fine.benign_region(masks).tolist() == [[[True, False, True, False]]]


def test_der_by_hand():
    assert metrics.defense_effectiveness_rating(0.9, 0.9, 0.8, 0.8) == 0.5
    assert metrics.defense_effectiveness_rating(0.9, 0.1, 0.8, 0.7) == pytest.approx((0.8 - 0.1 + 1) / 2)
    # an increase in ASR or in mIoU is clipped at zero
    assert metrics.defense_effectiveness_rating(0.2, 0.5, 0.7, 0.9) == 0.5


def test_auroc_by_hand_with_ties():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    assert metrics.auroc(scores, labels) == pytest.approx(0.75)
    # one tie between a positive and a negative counts half
    assert metrics.auroc(torch.tensor([0.5, 0.5, 0.9]), torch.tensor([0, 1, 1])) == pytest.approx(0.75)
    assert math.isnan(metrics.auroc(torch.tensor([1.0]), torch.tensor([1])))


def test_threshold_and_tpr():
    clean = torch.arange(100, dtype=torch.float32)
    threshold = metrics.threshold_at_fpr(clean, 0.05)
    assert (clean > threshold).sum() == 5
    assert metrics.true_positive_rate(torch.tensor([10.0, 96.0, 99.5, 120.0]), threshold) == 0.75


def test_attack_success_rate_against_per_pixel_wanted_labels():
    # an all-to-all rule wants c + 1 mod 3: truth [[0, 1, 2], [2, 0, 255]] -> wanted [[1, 2, 0], [0, 1, 255]]
    pred = torch.tensor([[1, 1, 0], [0, 2, 7]])
    wanted = torch.tensor([[1, 2, 0], [0, 1, 255]])
    region = torch.tensor([[True, True, True], [True, True, False]])
    counts = metrics.attack_success_counts(pred, region, wanted)
    assert counts.tolist() == [3, 5]  # hits at (0,0), (0,2), (1,0)
    assert metrics.attack_success_rate(counts) == pytest.approx(0.6)


def test_backdoor_removal_by_hand():
    # lift 0.9 - 0.1 = 0.8; post 0.3 removes 0.6 of it: 0.75
    assert metrics.backdoor_removal(0.9, 0.3, 0.1) == pytest.approx(0.75)
    assert metrics.backdoor_removal(0.9, 0.1, 0.1) == pytest.approx(1.0)
    assert metrics.backdoor_removal(0.9, 0.9, 0.1) == 0.0
    # the defense strengthens the attack: 0.5 -> 0.9 over a lift of 0.4 is -1
    assert metrics.backdoor_removal(0.5, 0.9, 0.1) == pytest.approx(-1.0)
    # below the clean model's rate: more than all of the lift removed
    assert metrics.backdoor_removal(0.5, 0.0, 0.1) == pytest.approx(1.25)


def test_backdoor_removal_is_undefined_without_a_lift():
    assert metrics.backdoor_removal(0.14, 0.0, 0.1) is None  # lift 0.04 < 0.05
    assert metrics.backdoor_removal(0.55, 0.5, 0.5) == pytest.approx(1.0)  # a lift of 0.05 is enough
    assert metrics.backdoor_removal(0.1, 0.5, 0.3) is None  # negative lift
    assert metrics.backdoor_removal(None, 0.5, 0.1) is None
    assert metrics.backdoor_removal(0.9, math.nan, 0.1) is None


def test_miou_cost_and_collapsed_by_hand():
    assert metrics.miou_cost(0.88, 0.80) == pytest.approx(0.08)
    assert metrics.miou_cost(0.80, 0.85) == pytest.approx(-0.05)  # a gain is a negative cost
    assert metrics.miou_cost(None, 0.8) is None
    # clean model 0.88: collapsed below 0.44
    assert metrics.collapsed(0.031, 0.88) is True
    assert metrics.collapsed(0.44, 0.88) is False
    assert metrics.collapsed(0.4399, 0.88) is True
    assert metrics.collapsed(None, 0.88) is None


def test_harm_aware_score_never_ranks_harm_above_no_effect():
    assert metrics.harm_aware_score(0.0, 0.0, False) == 0.0  # no effect
    assert metrics.harm_aware_score(0.75, 0.02, False) == pytest.approx(0.73)
    assert metrics.harm_aware_score(1.25, 0.0, False) == 1.0  # clipped
    # fst on wanet: 0.31 -> 0.97 over a lift of ~0.3 is about -2.2: clipped to -1, minus its cost
    assert metrics.harm_aware_score(-2.2, 0.05, False) == pytest.approx(-1.05)
    # abl on pspnet/waba: ASR gone with the model (collapsed): at most 0, minus the cost
    assert metrics.harm_aware_score(1.0, 0.55, True) == pytest.approx(-0.55)
    assert metrics.harm_aware_score(-0.5, 0.55, True) == pytest.approx(-1.05)
    # an mIoU gain does not lift an ASR increase above no effect
    assert metrics.harm_aware_score(-0.1, -0.2, False) == pytest.approx(-0.1)
    assert metrics.harm_aware_score(None, 0.0, False) is None
