"""Fake result records with the keys ``benchmark.runner.run`` writes, for the renderer tests."""

from __future__ import annotations

from typing import Callable

import pytest


def make_result(cell: str, *, attack: str = "fine_grained", defense: str = "none", seed: int = 0,
                poison_rate: float = 0.1, clean_miou: float = 0.9, asr: float = 0.8, **extra) -> dict:
    """A result record with the keys ``benchmark.runner.run`` writes."""
    result = {
        "dataset": "synthetic", "model": "unet", "attack": attack, "defense": defense,
        "poison_rate": poison_rate, "seed": seed, "num_classes": 8, "class_names": ["road", "car"],
        "image_size": 64, "train_images": 200, "test_images": 50, "batch_size": 32, "epochs": 2,
        "clean_miou": clean_miou, "asr": asr, "pba": 0.85, "baseline_asr": 0.01,
        "baseline_clean_miou": 0.91, "post_clean_miou": clean_miou, "post_asr": asr, "post_pba": 0.85,
        "der": 0.5, "per_class_iou": [0.9, None], "post_per_class_iou": [0.9, None],
        "poisoned_images": 20, "clean_budget_images": 10, "train_seconds": 12.0,
        "train_images_per_second": 33.0, "defense_seconds": 0.0, "eval_seconds": 1.0,
        "attack_params": {"target": "road", "victim": "car", "poison_rate": poison_rate},
        "defense_params": {}, "defense_report": {}, "device": "cpu", "hardware": "x86_64 CPU, 2 threads",
        "versions": {"torch": "2.5.0", "timm": "1.0.0", "smp": "0.5.0"},
        "artifact": f"model-{attack}-{seed}-{poison_rate}", "cell": cell,
    }
    result.update(extra)
    return result


@pytest.fixture
def fake_result() -> Callable[..., dict]:
    return make_result
