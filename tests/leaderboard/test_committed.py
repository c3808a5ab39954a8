"""The committed leaderboard is exactly what its committed result files render to (RobustBench-style),
and those files are the shards' grid: every attack x every defense on the default model."""

import dataclasses
from collections import defaultdict
from pathlib import Path

from attacks import Attack
from benchmark import artifacts, datasets, poisoning
from benchmark.grid import build_grid, read_config
from defenses import Defense
from defenses.training import DataFilterDefense, TrainingDefense
from leaderboard import render_leaderboard
from leaderboard.heatmaps import cd_diagram_png
from leaderboard.page import render_html
from leaderboard.render import leaderboard_views, load_results

ROOT = Path(__file__).parents[2] / "leaderboard"
RESULTS, GPU_RESULTS = ROOT / "results", ROOT / "results-gpu"
HEADLINE_ATTACKS = {"fine_grained", "iba_nni", "image_level"}
HEADLINE_DEFENSES = {"finetune", "pruning", "anp", "strip", "teco", "abl"}


def test_committed_markdown_is_rendered_from_committed_results():
    assert (ROOT / "LEADERBOARD.md").read_text() == render_leaderboard(RESULTS, GPU_RESULTS)


def test_committed_html_page_is_rendered_from_committed_results():
    assert (ROOT / "index.html").read_text() == render_html(RESULTS, GPU_RESULTS)


def test_committed_figures_are_the_committed_results_figures():

    views = leaderboard_views(RESULTS)
    names = {view.heatmap_name(matrix) for view in views for matrix in view.matrices}
    assert names == {p.name for p in (ROOT / "figures").glob("heatmap-*.png")}
    diagrams = {view.cd_name for view in views if view.analysis.friedman is not None}
    assert "cd-synthetic-unet-p10.png" in diagrams
    assert diagrams == {p.name for p in (ROOT / "figures").glob("cd-*.png")}
    assert (ROOT / "figures" / "asr_vs_poison_rate.png").is_file()


def test_committed_critical_difference_diagrams_are_byte_identical_re_renders():

    for view in leaderboard_views(RESULTS):
        drawn = cd_diagram_png(view)
        if drawn is not None:
            assert drawn == (ROOT / "figures" / view.cd_name).read_bytes(), view.cd_name


def test_committed_grid_is_every_attack_by_every_defense_on_the_default_model():
    seeds = defaultdict(set)
    for r in load_results(RESULTS):
        if r["model"] == "unet" and r["poison_rate"] == 0.1:
            seeds[(r["attack"], r["defense"])].add(r["seed"])
    attacks = {cls.name for _, cls in Attack.registry.items() if built_in(cls)} - AFTER_THE_V2_GRID
    for name, cls in Defense.registry.items():
        if not built_in(cls):
            continue  # a plugin another test loaded into this session
        retrains = issubclass(cls, (DataFilterDefense, TrainingDefense))
        for attack in attacks:
            assert len(seeds[(attack, name)]) >= (1 if retrains else 3), (attack, name)


AFTER_THE_V2_GRID = {"adaptive_blend", "adaptive_patch"}
"""Attacks registered after the committed grid was run (issue 22); the v3 grid (issue 25) has them,
and then this set goes."""


def built_in(cls: type) -> bool:
    return cls.__module__.split(".")[0] in ("attacks", "defenses")


def test_committed_grid_has_the_headline_cells_on_three_further_architectures():
    cells = defaultdict(set)
    for r in load_results(RESULTS):
        cells[r["model"]].add((r["attack"], r["defense"]))
    wanted = {(a, d) for a in HEADLINE_ATTACKS for d in HEADLINE_DEFENSES | {"none"}}
    further = [model for model, held in cells.items() if model != "unet" and wanted <= held]
    assert len(further) >= 3


def test_rerunning_the_shards_finds_every_committed_result(monkeypatch):
    """The committed files are the shards' cells under today's keys, so regenerating the
    leaderboard reuses them instead of adding a second row per cell."""
    monkeypatch.chdir(ROOT.parent)
    cells = [spec for shard in sorted((ROOT / "shards").glob("*.toml"))
             for spec in build_grid(read_config(str(shard.relative_to(ROOT.parent)))).cells()]
    data = datasets.build(dataclasses.replace(cells[0].dataset, cache_dir=None))  # nothing written under the repo
    keys = {artifacts.cell_key(spec, poisoning.make_attack(spec, data), Defense.registry.get(spec.defense).create(spec.defense_params))
            for spec in cells}
    assert keys == {r["cell"] for r in load_results(RESULTS)}
    assert {r["cell"] for r in load_results(GPU_RESULTS)} <= keys
