"""The leaderboard renders result files deterministically, aggregates seeds and exports CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from benchmark.errors import BenchmarkError
from leaderboard import export_csv, load_results, render_leaderboard


@pytest.fixture
def results_dir(tmp_path: Path, fake_result) -> Path:
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


def test_seeds_of_one_row_give_mean_and_seed_range(results_dir: Path) -> None:
    row = table_row(render_leaderboard(results_dir), "unet", "fine_grained", "10%", "none")
    cells = [p.strip() for p in row.strip("|").split("|")]
    # n=2: clean mIoU 0.90/0.94 -> mean 92.0, range 90.0-94.0; ASR 0.80/0.90 -> 85.0 (80.0-90.0)
    assert cells[4:7] == ["2", "92.0 (90.0–94.0)", "85.0 (80.0–90.0)"]
    assert cells[7] == "1.0 (1.0–1.0)"  # baseline ASR, identical over the seeds
    assert cells[12:15] == ["–", "–", "–"]  # DER, removal and mIoU cost say nothing without a defense


def test_percentages_and_detection_auroc(results_dir: Path) -> None:
    text = render_leaderboard(results_dir)
    cells = [p.strip() for p in table_row(text, "unet", "fine_grained", "10%", "strip").strip("|").split("|")]
    # removal (0.80 - 0.20) / (0.80 - 0.01) = 0.7595; mIoU cost 0.90 - 0.85 = 5 points
    assert cells[4:] == ["1", "90.0", "80.0", "1.0", "85.0", "85.0", "20.0", "85.0", "67.5", "75.9", "5.0", "97.3"]
    image_level = table_row(text, "unet", "image_level", "10%", "none")
    assert "99.9" in image_level and image_level.rstrip("| ").endswith("–")  # no AUROC


def cells_of(line: str) -> list[str]:
    return [p.strip() for p in line.strip("|").split("|")]


def test_sections_rankings_and_configuration(results_dir: Path) -> None:
    text = render_leaderboard(results_dir)
    for heading in ("## Attack x defense matrices", "### synthetic / unet, poison 10% (2 seeds)",
                    "## Rankings", "### Defenses", "### Attacks", "## Full table", "### synthetic", "## Costs"):
        assert heading in text
    assert "smp 0.5.0, timm 1.0.0, torch 2.5.0" in text
    assert "10 images (5.0% of the training split)" in text
    # strip: one cell, removal 0.7595 - cost 0.05 = score 70.9; one seed, so not in the paired
    # test (which needs three defenses anyway); DER 67.5, worst post ASR 20.0 (fine_grained)
    assert cells_of(table_row(text, "1", "strip")) == [
        "1", "strip", "70.9", "1", "–", "–", "75.9", "5.0", "0 of 1", "0 of 1", "67.5",
        "20.0 (fine_grained)", "1"]
    assert cells_of(table_row(text, "2", "none"))[2:6] == ["0.0 [0.0, 0.0]", "2", "–", "–"]
    # attacks by mean post ASR over defended cells: image_level has none (–), fine_grained 20.0;
    # fine_grained's undefended ASR: seed 0 -> mean(0.80, 0.80) = 0.80, seed 1 -> 0.90; lift
    # 0.79 / 0.89; the defenses' mean removal: strip's 75.9
    assert cells_of(table_row(text, "1", "fine_grained")) == [
        "1", "fine_grained", "20.0", "85.0 (80.0–90.0)", "1.0 (1.0–1.0)", "84.0 (79.0–89.0)", "75.9", "strip (20.0)",
        "1"]
    assert "too few defenses or blocks for a paired test" in text


def test_attack_by_defense_matrices(results_dir: Path) -> None:
    text = render_leaderboard(results_dir)
    matrix = text.split("**post-defense ASR (none = undefended ASR)**")[1]
    assert cells_of(table_row(matrix, "attack \\ defense")) == ["attack \\ defense", "none", "strip"]
    assert cells_of(table_row(matrix, "fine_grained")) == ["fine_grained", "85.0 (80.0–90.0)", "20.0"]
    assert "**post-defense ASR (none = undefended ASR)** (n = 1 seed per cell; 2 for fine_grained / none)" in text
    assert cells_of(table_row(matrix, "image_level")) == ["image_level", "99.9", "–"]
    der = text.split("**DER (50 = no effect, 100 = backdoor removed at no cost)**")[1]
    assert cells_of(table_row(der, "fine_grained")) == ["fine_grained", "67.5"]
    auroc = text.split("**detection AUROC of triggered vs clean test images**")[1]
    assert cells_of(table_row(auroc, "fine_grained")) == ["fine_grained", "97.3"]


def test_heatmaps_are_written_linked_and_stable(results_dir: Path) -> None:
    from leaderboard.heatmaps import write_heatmaps
    from leaderboard.render import leaderboard_views

    figures = results_dir.parent / "figures"
    paths = write_heatmaps(leaderboard_views(results_dir), figures)
    assert sorted(p.name for p in paths) == [
        "heatmap-synthetic-unet-p10-backdoor_removal.png", "heatmap-synthetic-unet-p10-der.png", "heatmap-synthetic-unet-p10-detection_auroc.png",
        "heatmap-synthetic-unet-p10-post_asr.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    write_heatmaps(leaderboard_views(results_dir), figures)
    assert before == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}  # untouched
    assert "](figures/heatmap-synthetic-unet-p10-der.png)" in render_leaderboard(results_dir)


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


def test_seed_range_against_hand_computed_values() -> None:
    from leaderboard.stats import spread, spread_text

    found = spread([0.8, 0.9, 1.0, None])
    assert found.n == 3 and found.mean == pytest.approx(0.9) and (found.low, found.high) == (0.8, 1.0)
    assert spread_text([0.8, 0.9, 1.0]) == "90.0 (80.0–100.0)"
    # 0 / 100 / 100 (scale_up on image_level): the range stays inside [0, 100]
    assert spread_text([0.0, 1.0, 1.0]) == "66.7 (0.0–100.0)"
    assert spread_text([-1.2, -0.5]) == "-85.0 (-120.0 to -50.0)"  # backdoor removal can be negative
    assert spread_text([-0.0001, 0.2]) == "10.0 (0.0–20.0)"  # never "-0.0"
    assert spread_text([0.5]) == "50.0" and spread_text([None]) == "–"


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


def test_collateral_columns_and_zoo_note_only_when_a_result_needs_them(tmp_path, fake_result):
    def render(folder: Path, *records: dict) -> str:
        folder.mkdir()
        for record in records:
            (folder / f"{record['cell']}.json").write_text(json.dumps(record))
        return render_leaderboard(folder)

    seed_only = render(tmp_path / "a", fake_result("c1"), fake_result("c2", attack="image_level"))
    assert "collateral ASR" not in seed_only and "ASR, generalised" not in seed_only
    zoo = render(tmp_path / "b", fake_result("c1"),
                 fake_result("c3", attack="conditional", collateral_asr=0.125, post_collateral_asr=0.25))
    assert "|collateralASR|postcollateralASR|" in zoo.replace(" ", "") and "ASR, generalised" in zoo
    (row,) = [line for line in zoo.splitlines() if line.replace(" ", "").startswith("|unet|conditional")]
    assert row.replace(" ", "").endswith("|12.5|25.0|")
    (row,) = [line for line in zoo.splitlines() if line.replace(" ", "").startswith("|unet|fine_grained")]
    assert row.replace(" ", "").endswith("|–|–|")


def test_a_row_that_predates_an_added_parameter_is_labelled_with_its_legacy_value(results_dir: Path, fake_result):
    text = render_leaderboard(results_dir)
    assert table_row(text, "unet", "fine_grained", "10%", "strip")  # alone, the old strip row keeps its label
    newer = fake_result("c5", defense="strip", defense_params={"fpr": 0.05, "blend": "sum", "direction": "low"},
                        defense_legacy_params={"blend": "convex", "direction": "low"})
    (results_dir / "c5.json").write_text(json.dumps(newer))
    text = render_leaderboard(results_dir)
    assert table_row(text, "unet", "fine_grained", "10%", "strip (blend=convex)")
    assert table_row(text, "unet", "fine_grained", "10%", "strip (blend=sum)")


def test_poisoned_data_detection_has_its_own_table(results_dir: Path, fake_result):
    assert "Poisoned-data detection" not in render_leaderboard(results_dir)
    spectral = fake_result("c6", defense="spectral", poison_detection_level="segment", poison_detection_auroc=0.9,
                           poison_detection_precision=0.25, poison_detection_recall=0.5, flagged_samples=8,
                           poisoned_samples=4, samples=100, defense_seconds=30.0)
    (results_dir / "c6.json").write_text(json.dumps(spectral))
    text = render_leaderboard(results_dir)
    assert table_row(text, "synthetic", "unet", "fine_grained", "10%", "spectral", "0", "segment", "90.0", "25.0",
                     "50.0", "8 / 4 / 100", "30.0", "12.0")


def test_rankings_are_per_model(tmp_path: Path, fake_result) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    for record in (fake_result("u", defense="pruning", der=0.9), fake_result("f", defense="pruning", der=0.3, model="fpn")):
        (folder / f"{record['cell']}.json").write_text(json.dumps(record))
    text = render_leaderboard(folder)
    unet = text.split("### Defenses: synthetic / unet")[1]
    fpn = text.split("### Defenses: synthetic / fpn")[1].split("### Attacks")[0]
    assert cells_of(table_row(unet, "1", "pruning"))[10] == "90.0"  # mean DER
    assert cells_of(table_row(fpn, "1", "pruning"))[10] == "30.0"  # not the mean of both models
