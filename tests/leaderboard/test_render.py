"""The leaderboard renders result files deterministically, aggregates seeds and exports CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from leaderboard import export_csv, load_results, render_leaderboard


def fake_result(cell: str, *, attack: str = "fine_grained", defense: str = "none", seed: int = 0,
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
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    records = [
        fake_result("c1", seed=0, clean_miou=0.90, asr=0.80),
        fake_result("c2", seed=1, clean_miou=0.94, asr=0.90),
        fake_result("c3", attack="image_level", asr=0.999),
        fake_result("c4", defense="strip", post_asr=0.2, post_clean_miou=0.85, der=0.675,
                    defense_params={"fpr": 0.05}, defense_seconds=3.0, detection_auroc=0.9731),
    ]
    for record in records:
        (folder / f"{record['cell']}.json").write_text(json.dumps(record))
    return folder


def table_row(text: str, *cells: str) -> str:
    """The Markdown table line whose leading cells are ``cells``."""
    for line in text.splitlines():
        parts = [p.strip() for p in line.strip("|").split("|")]
        if parts[:len(cells)] == list(cells):
            return line
    raise AssertionError(f"no row starting with {cells}")


def test_render_is_deterministic(results_dir: Path) -> None:
    assert render_leaderboard(results_dir).encode() == render_leaderboard(results_dir).encode()


def test_seeds_of_one_row_give_mean_and_sample_std(results_dir: Path) -> None:
    row = table_row(render_leaderboard(results_dir), "unet", "fine_grained", "10%", "none")
    cells = [p.strip() for p in row.strip("|").split("|")]
    # n=2; clean mIoU 0.90/0.94 -> 92.0 ± 2.8; ASR 0.80/0.90 -> 85.0 ± 7.1; DER n/a without a defense
    assert cells[4:7] == ["2", "92.0 ± 2.8", "85.0 ± 7.1"]
    assert cells[7] == "1.0 ± 0.0"  # baseline ASR, identical over the seeds
    assert cells[12] == "–"


def test_percentages_and_detection_auroc(results_dir: Path) -> None:
    text = render_leaderboard(results_dir)
    cells = [p.strip() for p in table_row(text, "unet", "fine_grained", "10%", "strip").strip("|").split("|")]
    assert cells[4:] == ["1", "90.0", "80.0", "1.0", "85.0", "85.0", "20.0", "85.0", "67.5", "97.3"]
    image_level = table_row(text, "unet", "image_level", "10%", "none")
    assert "99.9" in image_level and image_level.rstrip("| ").endswith("–")  # no AUROC


def test_summary_and_configuration_sections(results_dir: Path) -> None:
    text = render_leaderboard(results_dir)
    for heading in ("## synthetic", "## Summary by defense", "## Summary by attack", "## Costs"):
        assert heading in text
    assert "smp 0.5.0, timm 1.0.0, torch 2.5.0" in text
    assert "10 images (5.0% of the training split)" in text
    # strip: one cell, DER 67.5, post ASR 20.0, post mIoU 85.0
    assert [p.strip() for p in table_row(text, "strip").strip("|").split("|")] == ["strip", "67.5", "20.0", "85.0", "1"]
    # fine_grained: two trained models (c4 shares c1's artifact): mean ASR 85.0, clean mIoU 92.0
    assert [p.strip() for p in table_row(text, "fine_grained", "85.0").strip("|").split("|")] == [
        "fine_grained", "85.0", "1.0", "85.0", "92.0", "2"]


def test_figure_links_only_for_existing_files(results_dir: Path) -> None:
    figures = results_dir.parent / "figures"
    figures.mkdir()
    (figures / "c3.png").write_bytes(b"png")
    (figures / "asr_vs_poison_rate.png").write_bytes(b"png")
    text = render_leaderboard(results_dir)
    assert "[seed 0](figures/c3.png)" in text and "figures/c1.png" not in text
    assert "![ASR against poison rate](figures/asr_vs_poison_rate.png)" in text
    for png in figures.iterdir():
        png.unlink()
    assert "figures/" not in render_leaderboard(results_dir)


def test_missing_or_empty_results_dir_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_results(tmp_path / "absent")
    with pytest.raises(BenchmarkError, match="no result files"):
        render_leaderboard(tmp_path)


def test_csv_has_one_row_per_result_and_flattened_params(results_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    export_csv(results_dir, output)
    rows = list(csv.DictReader(io.StringIO(output.read_text())))
    assert [r["cell"] for r in rows] == ["c1", "c2", "c4", "c3"]  # sorted: fine_grained before image_level
    header = list(rows[0])
    assert header[:6] == ["dataset", "model", "attack", "poison_rate", "defense", "seed"]
    assert {"attack.victim", "attack.target", "defense.fpr", "detection_auroc"} <= set(header)
    assert not {"per_class_iou", "versions", "attack_params"} & set(header)
    assert rows[2]["defense.fpr"] == "0.05" and rows[0]["defense.fpr"] == "" and rows[0]["detection_auroc"] == ""


def test_a_row_that_predates_an_added_parameter_is_labelled_with_its_legacy_value(results_dir: Path):
    text = render_leaderboard(results_dir)
    assert table_row(text, "unet", "fine_grained", "10%", "strip")  # alone, the old strip row keeps its label
    newer = fake_result("c5", defense="strip", defense_params={"fpr": 0.05, "blend": "sum", "direction": "low"})
    (results_dir / "c5.json").write_text(json.dumps(newer))
    text = render_leaderboard(results_dir)
    assert table_row(text, "unet", "fine_grained", "10%", "strip (blend=convex)")
    assert table_row(text, "unet", "fine_grained", "10%", "strip (blend=sum)")


def test_poisoned_data_detection_has_its_own_table(results_dir: Path):
    assert "Poisoned-data detection" not in render_leaderboard(results_dir)
    spectral = fake_result("c6", defense="spectral", poison_detection_level="segment", poison_detection_auroc=0.9,
                           poison_detection_precision=0.25, poison_detection_recall=0.5, flagged_samples=8,
                           poisoned_samples=4, samples=100, defense_seconds=30.0)
    (results_dir / "c6.json").write_text(json.dumps(spectral))
    text = render_leaderboard(results_dir)
    assert table_row(text, "synthetic", "unet", "fine_grained", "10%", "spectral", "0", "segment", "90.0", "25.0",
                     "50.0", "8 / 4 / 100", "30.0", "12.0")
