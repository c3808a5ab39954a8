"""The committed leaderboard is exactly what its committed result files render to (RobustBench-style)."""

from pathlib import Path

from leaderboard import render_leaderboard

ROOT = Path(__file__).parents[2] / "leaderboard"


def test_committed_markdown_is_rendered_from_committed_results():
    assert (ROOT / "LEADERBOARD.md").read_text() == render_leaderboard(ROOT / "results")


def test_committed_grid_covers_the_default_grid():
    from leaderboard.render import load_results

    cells = {(r["model"], r["attack"], r["defense"]) for r in load_results(ROOT / "results")}
    models = {m for m, _, _ in cells}
    defenses = {d for _, _, d in cells}
    assert len(models) >= 3 and {"none", "pruning", "strip"} <= defenses and len(defenses) >= 5
    assert len(cells) == len(models) * 2 * len(defenses)  # every model x attack x defense
