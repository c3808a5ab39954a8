"""The detectors' threshold: the split-conformal rank of the clean calibration scores."""

import math

import pytest
import torch

from benchmark.errors import BenchmarkError
from benchmark.metrics import threshold_at_fpr
from defenses import registry
from defenses.base import rank_threshold


def test_rank_is_ceil_of_n_plus_one_times_one_minus_fpr():
    scores = torch.arange(1.0, 51.0)  # 1..50
    assert rank_threshold(scores, 0.05) == 49.0  # ceil(51 * 0.95) = 49: rejects 1 of 50 (a new one: 2/51)
    assert rank_threshold(scores, 0.5) == 26.0
    assert rank_threshold(torch.arange(1.0, 11.0), 0.05) == 10.0  # rank 11 > n: the largest


def test_a_new_exchangeable_clean_score_is_rejected_at_most_fpr_of_the_time():
    generator = torch.Generator().manual_seed(0)
    n, trials, fpr = 25, 4000, 0.05
    scores = torch.randn(trials, n + 1, generator=generator)
    thresholds = torch.tensor([rank_threshold(row[:n], fpr) for row in scores])
    rate = float((scores[:, n] > thresholds).double().mean())
    expected = (n + 1 - math.ceil((n + 1) * (1 - fpr))) / (n + 1)  # 1/26
    assert rate == pytest.approx(expected, abs=0.01) and rate <= fpr + 0.01
    legacy = torch.tensor([threshold_at_fpr(row[:n], fpr) for row in scores])
    assert float((scores[:, n] > legacy).double().mean()) > 0.07  # the former quantile rejects ~8.5%


def test_the_former_quantile_keeps_the_committed_keys():
    assert "calibration" not in registry.get("teco").create({"calibration": "quantile"}).key_params()
    assert registry.get("teco").create().key_params()["calibration"] == "rank"
    with pytest.raises(BenchmarkError):
        registry.get("strip").create({"calibration": "median"})
