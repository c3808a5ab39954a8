"""Positive controls of the input detectors (STRIP, SCALE-UP, IBD-PSC, Beatrix, TeCo): on
``image_level`` (BadNets' analogue: a patch trigger turns the whole map into the target) at the
leaderboard's configuration, each must detect the triggered inputs, remove the attack by
rejecting them, and reject clean inputs at about its nominal false-positive rate.

Targets (issue 24), per seed: detection AUROC >= 0.90; post ASR <= baseline ASR + 0.10.

The clean rejection rate is the honest part. A threshold set on the ``n = 50`` clean budget
images at fpr 0.05 (the split-conformal rank, ``defenses.base.rank_threshold``) rejects a
fraction ``p ~ Beta(2, 49)`` of clean inputs (mean 3.9%), and 150 test images measure ``p``
with binomial noise on top. Even for exchangeable scores, the measured rate is within 2 points
of 5% on only 38% of seeds; its 99.5% point is 0.153 per seed and the 99% interval of a
three-seed mean is [0.007, 0.098] (simulated beta-binomial; the binomial noise of 150 images
alone gives [0.013, 0.10] at 99%). So the tests assert a rate <= ``FRR_SEED`` per seed and a
three-seed mean <= ``FRR_MEAN``: a systematic excess (the former 17.5% of Beatrix, or 8.5%
from the former interpolated quantile on 25 images) fails, chance does not.

A detector changes no prediction; its only clean cost is the rejected clean images, which the
harness scores as wrong everywhere, about the rejection rate times the clean mIoU. So the
mIoU cost is asserted <= 0.05 per seed plus whatever rejection exceeds the nominal rate (the
tolerance above), and <= 0.05 on the three-seed mean.
"""

from __future__ import annotations

import pytest

SEEDS = (0, 1, 2)
DETECTORS = ("strip", "scale_up", "ibd_psc", "beatrix", "teco")
FPR = 0.05
FRR_SEED = 0.15
FRR_MEAN = 0.10


def check_seed(record: dict) -> None:
    label = f"{record['defense']} seed {record['seed']}"
    assert record["detection_auroc"] >= 0.90, f"{label}: AUROC {record['detection_auroc']:.3f}"
    assert record["post_asr"] <= record["baseline_asr"] + 0.10, \
        f"{label}: post ASR {record['post_asr']:.3f}, clean model's {record['baseline_asr']:.3f}"
    assert record["false_rejection_rate"] <= FRR_SEED, f"{label}: clean rejection {record['false_rejection_rate']:.3f}"
    excess = max(0.0, record["false_rejection_rate"] - FPR)
    cost = record["clean_miou"] - record["post_clean_miou"]
    assert cost <= 0.05 + excess, f"{label}: mIoU cost {cost:.3f} at clean rejection {record['false_rejection_rate']:.3f}"


KNOWN_FAILURES = {  # faithful ports whose paper's premise fails on one seed's model (see their docstrings)
    "strip": "seeds 1, 2: AUROC 0.39, 0.66; triggered blends are no more confident than clean ones",
    "ibd_psc": "seed 1: AUROC 0.0; the backdoor does not survive amplifying the 24 layers xi=0.6 picks",
}


@pytest.mark.control
@pytest.mark.parametrize("defense", [pytest.param(d, marks=pytest.mark.xfail(strict=False, reason=KNOWN_FAILURES[d]))
                                     if d in KNOWN_FAILURES else d for d in DETECTORS])
def test_detector_detects_image_level_and_rejects_about_fpr_of_clean_inputs(control, defense: str) -> None:
    records = [control("image_level", defense, seed) for seed in SEEDS]
    for record in records:
        check_seed(record)
    rates = [r["false_rejection_rate"] for r in records]
    costs = [r["clean_miou"] - r["post_clean_miou"] for r in records]
    assert sum(rates) / len(rates) <= FRR_MEAN, f"{defense}: clean rejection {rates}"
    assert sum(costs) / len(costs) <= 0.05, f"{defense}: mIoU costs {costs}"
