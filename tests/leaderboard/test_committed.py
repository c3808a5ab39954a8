"""The committed leaderboard is exactly what its committed result files render to (RobustBench-style)."""

from pathlib import Path

from leaderboard import render_leaderboard

ROOT = Path(__file__).parents[2] / "leaderboard"


def test_committed_markdown_is_rendered_from_committed_results():
    assert (ROOT / "LEADERBOARD.md").read_text() == render_leaderboard(ROOT / "results")


def test_committed_html_page_is_rendered_from_committed_results():
    from leaderboard.page import render_html

    assert (ROOT / "index.html").read_text() == render_html(ROOT / "results")


def test_committed_heatmaps_are_the_committed_results_matrices():
    from leaderboard.render import leaderboard_views

    views = leaderboard_views(ROOT / "results")
    names = {view.heatmap_name(matrix) for view in views for matrix in view.matrices}
    assert names == {p.name for p in (ROOT / "figures").glob("heatmap-*.png")}


def test_committed_grid_covers_the_default_grid():
    from leaderboard.render import load_results

    cells = {(r["model"], r["attack"], r["defense"]) for r in load_results(ROOT / "results")}
    models = {m for m, _, _ in cells}
    defenses = {d for _, _, d in cells}
    assert len(models) >= 3 and {"none", "pruning", "strip"} <= defenses and len(defenses) >= 5
    assert len(cells) == len(models) * 2 * len(defenses)  # every model x attack x defense


def test_rerunning_the_grid_finds_every_committed_result(monkeypatch):
    """The committed files are the grid's cells under today's keys, so regenerating the
    leaderboard reuses them instead of adding a second row per cell."""
    from benchmark import runner
    from benchmark.grid import build_grid, read_config
    from leaderboard.render import load_results

    monkeypatch.chdir(ROOT.parent)
    cells = build_grid(read_config("leaderboard/grid.toml")).cells()
    data = runner.load_dataset(cells[0])
    keys = {runner.cell_key(spec, runner.make_attack(spec, data), runner.make_defense(spec)) for spec in cells}
    assert keys == {r["cell"] for r in load_results(ROOT / "results")}
