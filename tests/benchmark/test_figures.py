"""ASR-against-poison-rate plots are drawn only when there is a curve to draw."""

from __future__ import annotations

from pathlib import Path

from benchmark import figures, rate_figure


def fake_result(poison_rate: float, defense: str, asr: float) -> dict:
    return {"dataset": "synthetic", "model": "unet", "attack": "fine_grained", "defense": defense,
            "poison_rate": poison_rate, "seed": 0, "asr": asr, "post_asr": asr / 4,
            "artifact": f"model-{poison_rate}", "cell": f"{poison_rate}-{defense}"}


def test_asr_vs_poison_rate_writes_a_png_for_two_rates(tmp_path: Path) -> None:
    results = [fake_result(rate, defense, asr) for rate, asr in ((0.05, 0.6), (0.1, 0.9))
               for defense in ("none", "median")]
    path = rate_figure.asr_vs_poison_rate(results, tmp_path / "figures" / "asr.png")
    assert path == tmp_path / "figures" / "asr.png"
    assert path.read_bytes().startswith(b"\x89PNG")


def test_asr_vs_poison_rate_skips_a_single_rate(tmp_path: Path) -> None:
    assert rate_figure.asr_vs_poison_rate([fake_result(0.1, "none", 0.9)], tmp_path / "asr.png") is None
    assert not (tmp_path / "asr.png").exists()


def test_cell_figure_is_importable() -> None:
    assert callable(figures.cell_figure)
