"""What the paired test of a view says, in sentences that claim only what it supports.

Shared by the Markdown and the HTML page (plain text: no markup), so both say the same. A
defense is called better or worse than another, or than no defense, only when the post-hoc
test separates the two (``Analysis.separated``); everything else is "not distinguishable".
"""

from __future__ import annotations

from leaderboard.matrices import View, p_text, score_text
from leaderboard.significance import ALPHA, RESAMPLES, TEST_NAME, Analysis

RANKING_TEXT = (
    "Per model. Defenses are ranked by their harm-aware score (see Metrics): the mean over "
    "attacks of its mean over seeds, with a 95% stratified-bootstrap interval (seeds resampled "
    f"within each attack, {RESAMPLES} resamples, fixed generator seed). Which differences are real "
    f"is decided by a paired test over the (attack, seed) blocks that every compared defense "
    f"shares: {TEST_NAME}, at alpha = {ALPHA:g}, pairs compared only when Friedman rejects. "
    "`mean rank` is the defense's mean rank over those blocks (1 = best), as drawn in the "
    "critical-difference diagram; `vs none` is the post-hoc verdict against no defense with its "
    "Holm-adjusted p. Defenses with fewer seeds than the blocks (one seed: the training-time "
    "defenses) are ranked by their score but not tested. The other columns explain the score: "
    "mean backdoor removal (clipped to [−100, 100]), mean mIoU cost, collapsed cells, cells whose "
    "ASR rose by more than 5 points; mean DER and the worst post ASR over the attacks are for "
    "reference. Attacks by mean post-defense ASR over the defenses (the attack that survives "
    "defenses best first); lift = ASR − baseline ASR; the strongest defense is the one with the "
    "lowest mean post ASR against it."
)
IMPROVEMENT_HEADERS = ["A", "B", "P(A beats B)", "Holm p", "separated"]
SYMBOLS = {">": "▲", "<": "▼", "=": "·"}


def findings(view: View) -> list[str]:
    """The view's findings, one sentence (or a few) per item."""
    a = view.analysis
    if a.friedman is None:
        return [f"{view.title}: too few defenses or blocks for a paired test ({len(a.tested)} defenses, "
                f"{len(a.blocks)} blocks); no difference is claimed."]
    chi2, dof, p = a.friedman
    excluded = ""
    if a.excluded_blocks:
        names = ", ".join(f"{attack} seed {seed}" for attack, seed in a.excluded_blocks)
        excluded = f" ({names} left out: backdoor lift below 5 points, nothing to remove)"
    lines = [f"{view.title}: {len(a.tested)} defenses (none included) compared over {len(a.blocks)} "
             f"(attack, seed) blocks{excluded}. Friedman chi2({dof}) = {chi2:.1f}, p = {p_text(p)}; "
             f"Wilcoxon-Holm separates {a.separated_pairs} of {a.pairs} pairs."]
    others = [d for d in a.order if d in a.tested and d != "none"]
    if 2 / 2 ** len(a.blocks) >= ALPHA:
        lines.append(f"With {len(a.blocks)} blocks no two-sided Wilcoxon test can reach p < {ALPHA:g} "
                     f"(its smallest p is {2 / 2 ** len(a.blocks):.3g}): this view cannot separate any pair.")
    if not a.rejects:
        lines.append(f"Friedman does not reject at {ALPHA:g}: no difference between these defenses is claimed, "
                     f"and none of them is distinguishable from no defense ({_names(others)}).")
    else:
        verdicts = {v: [d for d in others if a.defenses[d].versus_none == v]
                    for v in ("better", "not distinguishable", "worse")}
        if verdicts["better"]:
            lines.append(f"Better than no defense: {_names(verdicts['better'])}.")
        else:
            lines.append("No defense is separated as better than no defense.")
        if verdicts["not distinguishable"]:
            lines.append(f"Not distinguishable from no defense: {_names(verdicts['not distinguishable'])}.")
        if verdicts["worse"]:
            lines.append(f"Worse than no defense (they strengthen the attack or cost accuracy): "
                         f"{_names(verdicts['worse'])}.")
        if others:
            best = others[0]
            tied = [d for d in others[1:] if not a.separated(best, d)]
            summary = a.defenses[best]
            sentence = (f"The best-scoring tested defense, {best} ({score_text(summary.score, summary.interval)}), "
                        + (f"is not separated from {_names(tied)}" if tied else "is separated from every other"))
            if a.improvement:
                first = a.improvement[0]
                sentence += f"; P({first[0]} beats {first[1]}) = {first[2]:.2f}"
            lines.append(sentence + ".")
    if a.untested:
        scored = [d for d in a.untested if a.defenses[d].score is not None]
        if scored:
            seeds = sorted({a.defenses[d].seeds for d in scored})
            lines.append(f"Not in the paired test ({' or '.join(map(str, seeds))} seed(s) per attack, fewer than "
                         f"the blocks): " + ", ".join(f"{d} ({score_text(a.defenses[d].score, None)})" for d in scored)
                         + "; their scores are not compared with the others.")
    return lines


def pairwise_rows(analysis: Analysis) -> tuple[list[str], list[list[str]]]:
    """The pairwise verdicts of the tested defenses, in score order: ▲ the row's defense is
    separated as better than the column's, ▼ as worse, · not separated."""
    names = [d for d in analysis.order if d in analysis.tested]
    headers = ["#", "defense"] + [str(i) for i in range(1, len(names) + 1)]
    rows = [[str(i), a] + ["" if a == b else SYMBOLS[analysis.compare(a, b)] for b in names]
            for i, a in enumerate(names, start=1)]
    return headers, rows


def improvement_rows(analysis: Analysis) -> list[list[str]]:
    return [[a, b, f"{probability:.2f}", p_text(analysis.pvalues.get((a, b))),
             "yes" if analysis.separated(a, b) else "no"] for a, b, probability in analysis.improvement]


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"
