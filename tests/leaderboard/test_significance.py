"""The paired test's glue against values computed by hand on tiny tables."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from leaderboard import matrices
from leaderboard.findings import findings
from leaderboard.significance import analyse, probability_of_improvement

# two attacks x four seeds; every block ranks a > b > none, and all paired differences are distinct
A = {"x": [0.5, 0.6, 0.7, 0.4], "y": [0.55, 0.65, 0.45, 0.75]}
B = {"x": [0.1, 0.12, 0.05, 0.3], "y": [0.2, 0.26, 0.08, 0.33]}


def scores(table: dict[str, dict[str, list[float]]]) -> dict:
    return {(attack, defense): dict(enumerate(values)) for defense, by_attack in table.items()
            for attack, values in by_attack.items()}


def zeros(seeds: int) -> dict[str, list[float]]:
    return {"x": [0.0] * seeds, "y": [0.0] * seeds}


def test_friedman_wilcoxon_holm_and_aggregates_by_hand():
    analysis = analyse(scores({"none": zeros(4), "a": A, "b": B}))
    assert analysis.tested == ["none", "a", "b"] and len(analysis.blocks) == 8
    # ranks 1, 2, 3 on all 8 blocks: R = 8, 16, 24; chi2 = 12 / (8 * 3 * 4) * (64 + 256 + 576) - 3 * 8 * 4 = 16
    # with 2 degrees of freedom p = exp(-16 / 2)
    chi2, dof, p = analysis.friedman
    assert (chi2, dof) == (pytest.approx(16.0), 2) and p == pytest.approx(math.exp(-8))
    # each pair: 8 positive differences, exact two-sided p = 2 / 2**8; Holm over 3: 3p, 2p, p -> max so far = 3p
    assert analysis.pvalues[("a", "none")] == pytest.approx(3 * 2 / 256)
    assert analysis.pvalues[("a", "b")] == pytest.approx(3 * 2 / 256)
    assert analysis.separated_pairs == 3 and analysis.compare("a", "b") == ">" and analysis.compare("none", "a") == "<"
    a, b = analysis.defenses["a"], analysis.defenses["b"]
    assert (a.mean_rank, b.mean_rank, analysis.defenses["none"].mean_rank) == (1.0, 2.0, 3.0)
    # mean over attacks of the mean over seeds: a (0.55 + 0.6) / 2, b (0.1425 + 0.2175) / 2
    assert a.score == pytest.approx(0.575) and b.score == pytest.approx(0.18)
    assert a.versus_none == "better" and a.p_versus_none == pytest.approx(6 / 256)
    # a resampled mean of x's seeds lies in [0.4, 0.7], of y's in [0.45, 0.75]
    low, high = a.interval
    assert 0.425 <= low < 0.575 < high <= 0.725
    assert analysis.defenses["none"].interval == (0.0, 0.0)  # constant
    assert analyse(scores({"none": zeros(4), "a": A, "b": B})).defenses["a"].interval == a.interval  # seeded
    assert analysis.improvement == [("a", "b", 1.0)]  # every seed of a beats every seed of b


def test_holm_can_leave_every_pair_unseparated_although_friedman_rejects():
    table = {"none": zeros(3), "a": {k: v[:3] for k, v in A.items()}, "b": {k: v[:3] for k, v in B.items()}}
    analysis = analyse(scores(table))
    # 6 blocks: chi2 = 12 / 72 * (36 + 144 + 324) - 72 = 12, p = exp(-6); Wilcoxon p = 2 / 64 each, Holm 3x
    assert analysis.friedman[0] == pytest.approx(12.0) and analysis.rejects
    assert analysis.pvalues[("a", "none")] == pytest.approx(3 * 2 / 64)
    assert analysis.separated_pairs == 0 and analysis.defenses["a"].versus_none == "not distinguishable"


def test_a_defense_with_fewer_seeds_is_scored_but_not_tested():
    table = scores({"none": zeros(4), "a": A, "b": B})
    table[("x", "c")], table[("y", "c")] = {0: 0.9}, {0: 0.3}
    analysis = analyse(table)
    assert analysis.untested == ["c"] and "c" not in analysis.tested
    c = analysis.defenses["c"]
    assert c.score == pytest.approx(0.6) and c.interval is None and c.seeds == 1 and c.versus_none is None
    assert analysis.order[:2] == ["c", "a"]


def test_identical_defenses_are_never_separated():
    analysis = analyse(scores({"none": zeros(4), "noop": zeros(4), "a": A}))
    assert analysis.pvalues[("noop", "none")] == 1.0 and not analysis.separated("noop", "none")


def test_probability_of_improvement_by_hand():
    # attack x: a (1, 2, 3) vs b (0, 2, 5): 1>0; 2>0, 2=2 half; 3>0, 3>2 -> 4.5 of 9; attack y: 1 of 1
    a = {("x", 0): 1.0, ("x", 1): 2.0, ("x", 2): 3.0, ("y", 0): 1.0}
    b = {("x", 0): 0.0, ("x", 1): 2.0, ("x", 2): 5.0, ("y", 0): 0.0}
    assert probability_of_improvement(a, b) == pytest.approx((0.5 + 1.0) / 2)


def test_views_score_from_record_fields_and_leave_out_blocks_without_a_lift(fake_result):
    records = []
    for seed in range(2):
        records += [fake_result(f"n{seed}", seed=seed, asr=0.8),
                    fake_result(f"p{seed}", seed=seed, asr=0.8, defense="pruning", post_asr=0.01 + 0.79 / 2),
                    fake_result(f"s{seed}", seed=seed, asr=0.8, defense="strip", post_asr=0.8, post_clean_miou=0.7)]
    # an attack the model did not learn: lift 0.03 - 0.01 < 5 points, nothing to remove
    records.append(fake_result("w", attack="image_level", asr=0.03))
    view = matrices.views(records, lambda r: r["attack"], lambda r: r["defense"])[0]
    assert view.excluded == [("image_level", 0)]
    # pruning removes half the lift at no cost: 0.5; strip removes nothing and costs 0.2: -0.2
    assert view.scores[("fine_grained", "pruning")] == {0: pytest.approx(0.5), 1: pytest.approx(0.5)}
    assert view.scores[("fine_grained", "strip")] == {0: pytest.approx(-0.2), 1: pytest.approx(-0.2)}
    assert len(view.analysis.blocks) == 2
    text = " ".join(findings(view))
    assert "image_level seed 0 left out" in text and "no two-sided Wilcoxon test can reach" in text


def test_record_fields_win_over_derived_values(fake_result):
    from leaderboard import harm

    old = fake_result("o", defense="pruning", post_asr=0.4)
    assert harm.backdoor_removal(old) == pytest.approx((0.8 - 0.4) / (0.8 - 0.01))
    assert harm.collapsed(old) is False and harm.miou_cost(old) == pytest.approx(0.0)
    new = fake_result("n", defense="pruning", post_asr=0.4, backdoor_removal=0.25, miou_cost=0.1, collapsed=True)
    assert (harm.backdoor_removal(new), harm.miou_cost(new), harm.collapsed(new)) == (0.25, 0.1, True)
    assert harm.harm_score(new) == pytest.approx(-0.1)  # collapsed: removal counts at most 0


def test_rendering_never_imports_attacks_defenses_or_models(tmp_path: Path, fake_result):
    folder = tmp_path / "results"
    folder.mkdir()
    for record in (fake_result("a"), fake_result("b", defense="pruning", post_asr=0.3)):
        (folder / f"{record['cell']}.json").write_text(json.dumps(record))
    script = (
        "import sys\n"
        "from leaderboard import render_leaderboard\n"
        "from leaderboard.page import render_html\n"
        "from leaderboard.heatmaps import write_heatmaps, write_poison_rate_figure\n"
        "from leaderboard.render import leaderboard_views\n"
        f"write_heatmaps(leaderboard_views({str(folder)!r}), __import__('pathlib').Path({str(tmp_path / 'figures')!r}))\n"
        f"write_poison_rate_figure({str(folder)!r}, __import__('pathlib').Path({str(tmp_path / 'figures')!r}))\n"
        f"render_leaderboard({str(folder)!r}); render_html({str(folder)!r})\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('attacks', 'defenses', 'models'))\n"
        "assert not loaded, loaded\n"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]


def view_of(table: dict) -> matrices.View:
    return matrices.View("synthetic", "unet", 0.1, [], [], scores(table))


def test_findings_name_only_the_differences_the_test_supports():
    text = " ".join(findings(view_of({"none": zeros(4), "a": A, "b": B})))
    assert "Friedman chi2(2) = 16.0, p = 0.00034; Wilcoxon-Holm separates 3 of 3 pairs." in text
    assert "Better than no defense: a, b." in text and "is separated from every other" in text
    three = {"none": zeros(3), "a": {k: v[:3] for k, v in A.items()}, "b": {k: v[:3] for k, v in B.items()}}
    text = " ".join(findings(view_of(three)))
    assert "No defense is separated as better than no defense. Not distinguishable from no defense: a, b." in text
    assert "is not separated from b" in text


def test_matrix_note_groups_other_seed_counts_by_column_then_row():
    m = matrices.Matrix("post_asr", "t", ["x", "y", "z"], ["none", "p", "q", "abl"])
    for row in m.rows:
        for column in m.columns:
            m.cells[(row, column)] = [0.5] * (1 if column == "abl" else 2 if row == "z" else 3)
    m.cells[("x", "q")] = [0.5, 0.5]
    assert m.seeds_note() == "n = 3 seeds per cell; 1 in column abl; 2 in row z; 2 for x / q"
