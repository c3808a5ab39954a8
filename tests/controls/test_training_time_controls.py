"""Positive controls of the training-time defenses: ``spectral``, ``activation_clustering`` and
``abl`` on ``image_level``, the BadNets analogue, on the default model, seeds 0-2.

Why ``image_level``: all three papers evaluate all-to-one patch poisoning in which a poisoned
sample carries the trigger and the target label (BadNets-style pixel/pattern patches on
CIFAR-10 for spectral signatures, Tran et al. 2018; MNIST patterns and LISA stickers for
activation clustering, Chen et al. 2018; BadNets among ABL's ten attacks, Li et al. 2021).
``image_level`` is that attack: the poisoned image carries a patch and its whole annotation
becomes the target, so its target segment *is* the poisoned sample. ``fine_grained`` changes
only the victim's pixels inside a clean image, which none of the papers covers.

What must hold on every seed: the poisoned samples are found (detection AUROC and recall for
the data filters, isolation precision and recall for ABL, which isolates only 1% of the
segments, fewer than the 100 poisoned ones), and the retrained / secured model's ASR is within
10 points of the clean model's (baseline ASR) at a clean mIoU cost of at most 5 points. ABL's
unlearning, spectral signatures on seed 1 and activation clustering's mIoU cost on seed 1 do
not meet it yet, nor, on the models two threads train (CI's), activation clustering's detection
on seed 2 and ABL's isolation on seed 0: those tests are expected failures (non-strict, so a seed that passes shows as
xpass), each with its diagnosis in the defense's docstring.
"""

from __future__ import annotations

import pytest

SEEDS = (0, 1, 2)
ASR_MARGIN = 0.10
MIOU_COST = 0.05

FILTERS = {
    # defense: (min AUROC, min recall) of the segment flags against the hidden poison indicator
    "spectral": (0.95, 0.95),
    "activation_clustering": (0.90, 0.90),
}

SPECTRAL_SECOND_DIRECTION = pytest.mark.xfail(
    reason="seed 1: the poison lies along the second singular direction of road, not the top one "
           "(defenses/spectral.py docstring)", strict=False)
AC_CLEAN_CLASSES_FLAGGED = pytest.mark.xfail(
    reason="seed 1: relative size also flags uneven clean splits (person 0.29), 9 points of mIoU "
           "(defenses/activation_clustering.py docstring)", strict=False)
AC_SEED_2_OVERLAP = pytest.mark.xfail(
    reason="seed 2 of the models two threads train (CI's): AUROC 0.885 at recall 1.00 and precision 0.09, "
           "many clean segments scoring with the poison (one-thread model: AUROC 0.98); the retrained "
           "model's ASR is 1.8 all the same", strict=False)
DETECTION = [pytest.param("spectral", seed, marks=SPECTRAL_SECOND_DIRECTION) for seed in SEEDS] + [
    pytest.param("activation_clustering", seed, marks=AC_SEED_2_OVERLAP) if seed == 2
    else pytest.param("activation_clustering", seed) for seed in SEEDS]
REPAIR = [pytest.param("spectral", marks=SPECTRAL_SECOND_DIRECTION),
          pytest.param("activation_clustering", marks=AC_CLEAN_CLASSES_FLAGGED)]


def check_repair(record: dict) -> None:
    summary = (f"post ASR {record['post_asr']:.3f} (baseline {record['baseline_asr']:.3f}, "
               f"undefended {record['asr']:.3f}), clean mIoU {record['clean_miou']:.3f} -> "
               f"{record['post_clean_miou']:.3f}")
    assert record["post_asr"] <= record["baseline_asr"] + ASR_MARGIN, summary
    assert record["clean_miou"] - record["post_clean_miou"] <= MIOU_COST, summary


def detection(record: dict) -> str:
    return (f"AUROC {record['poison_detection_auroc']:.3f}, precision {record['poison_detection_precision']:.3f}, "
            f"recall {record['poison_detection_recall']:.3f} ({record['flagged_samples']} flagged, "
            f"{record['poisoned_samples']} poisoned of {record['samples']} {record['poison_detection_level']}s)")


@pytest.mark.control
@pytest.mark.parametrize("defense, seed", DETECTION)
def test_data_filter_finds_the_poisoned_segments(control, defense, seed):
    record = control("image_level", defense, seed)
    min_auroc, min_recall = FILTERS[defense]
    assert record["poison_detection_auroc"] >= min_auroc, detection(record)
    assert record["poison_detection_recall"] >= min_recall, detection(record)


@pytest.mark.control
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("defense", REPAIR)
def test_retraining_without_the_flagged_segments_removes_the_backdoor(control, defense, seed):
    check_repair(control("image_level", defense, seed))


ABL_SEED_0_ISOLATION = pytest.mark.xfail(
    reason="seed 0 of the models two threads train (CI's): 70 isolated segments, precision 0.44, recall 0.31 "
           "(one-thread model: 0.74 / 0.52); its unlearning still reaches post ASR 0.11", strict=False)


@pytest.mark.control
@pytest.mark.parametrize("seed", [pytest.param(0, marks=ABL_SEED_0_ISOLATION), 1, 2])
def test_abl_isolates_poisoned_segments(control, seed):
    record = control("image_level", "abl", seed)
    # 1% of about 7,000 segments is about 70, below the 100 poisoned: recall is at most ~0.7
    assert record["poison_detection_precision"] >= 0.6, detection(record)
    assert record["poison_detection_recall"] >= 0.4, detection(record)


@pytest.mark.control
@pytest.mark.xfail(reason="ABL's unlearning stops at its cliff with post ASR 0.19 on seed 0; past it the model "
                          "collapses (defenses/abl.py docstring)", strict=False)
@pytest.mark.parametrize("seed", SEEDS)
def test_abl_unlearns_the_backdoor(control, seed):
    check_repair(control("image_level", "abl", seed))
