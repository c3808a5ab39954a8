"""Which differences between defenses are real: a paired test over (attack, seed) blocks.

Per model view, every defense (``none`` included) has a harm-aware score
(``benchmark.metrics.harm_aware_score``) on each (attack, seed) block: one attacked model,
shared by all its defense cells. Comparing defenses block by block cancels what the blocks
share (an attack that is hard for everyone, an easy seed), which a comparison of intervals
over seeds cannot do. The protocol (Demšar 2006, with Benavoli et al. 2016's advice to use
Wilcoxon signed-rank rather than mean-rank post-hoc tests):

1. Blocks: the (attack, seed) pairs of the undefended cells whose backdoor lift (ASR - baseline
   ASR) is at least ``benchmark.metrics.MIN_LIFT``; elsewhere there is nothing to remove and
   the score is undefined. The test takes the defenses scored on every block; a defense with
   fewer seeds (the training-time ones today) is ranked by its score but not tested.
2. Friedman's test (``scipy.stats.friedmanchisquare``) over the tested defenses. Only when it
   rejects at ``ALPHA`` is any pair compared:
3. pairwise Wilcoxon signed-rank tests over the blocks (``scipy.stats.wilcoxon``, zero
   differences dropped as Wilcoxon did; two identical defenses, e.g. two no-ops, have p = 1),
   Holm-adjusted over all pairs (``statsmodels``' ``multipletests``). A pair is
   *separated* when its adjusted p is below ``ALPHA``; its direction is the sign of the
   difference of the aggregate scores.
4. Each defense's aggregate score (mean over attacks of its mean over seeds) gets a 95%
   stratified-bootstrap interval: seeds are resampled with replacement within each attack, as
   rliable does, the same draws for every defense, from a seeded generator, so a render is
   deterministic. One seed per attack has no interval.
5. For the top defenses, the probability of improvement (Agarwal et al. 2021, rliable): the
   chance that A scores above B on a random seed of a random attack, ties half, from the
   Mann-Whitney U of each attack's seeds (``scipy.stats.mannwhitneyu``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
RESAMPLES = 4000
RNG_SEED = 20251201
TOP = 4
"""How many of the best tested defenses get pairwise probabilities of improvement."""
TEST_NAME = ("Friedman test over (attack, seed) blocks, then pairwise Wilcoxon signed-rank tests "
             "with Holm's correction")

Scores = dict[tuple[str, str], dict[int, float]]
"""(attack, defense) -> {seed: harm-aware score} for the cells whose score is defined."""


@dataclass
class DefenseSummary:
    """One defense's row in the analysis."""

    name: str
    score: float | None
    """Mean over attacks of the mean harm-aware score over seeds."""
    interval: tuple[float, float] | None
    """95% stratified-bootstrap interval of ``score`` (None with one seed per attack)."""
    seeds: int
    """Most seeds any attack has for this defense."""
    blocks: int
    """Scored (attack, seed) blocks."""
    mean_rank: float | None = None
    """Mean rank over the test's blocks (1 = best); None when not tested."""
    versus_none: str | None = None
    """``better`` / ``worse`` / ``not distinguishable`` than no defense; None when not tested."""
    p_versus_none: float | None = None


@dataclass
class Analysis:
    """The paired test of one view and the defenses' aggregate scores."""

    blocks: list[tuple[str, int]]
    excluded_blocks: list[tuple[str, int]]
    """Undefended (attack, seed) blocks left out: the backdoor lift is below 5 points."""
    tested: list[str]
    untested: list[str]
    friedman: tuple[float, int, float] | None
    """(chi2, degrees of freedom, p); None when fewer than 3 defenses or 2 blocks are tested."""
    pvalues: dict[tuple[str, str], float] = field(default_factory=dict)
    """Holm-adjusted Wilcoxon p of each tested pair (both orders)."""
    defenses: dict[str, DefenseSummary] = field(default_factory=dict)
    improvement: list[tuple[str, str, float]] = field(default_factory=list)
    """(A, B, P(A beats B)) for the pairs of the top tested defenses."""

    @property
    def rejects(self) -> bool:
        return self.friedman is not None and self.friedman[2] < ALPHA

    @property
    def order(self) -> list[str]:
        """Defenses by aggregate score, best first (unscored last), then by name."""
        return sorted(self.defenses, key=lambda d: (self.defenses[d].score is None,
                                                    -(self.defenses[d].score or 0.0), d))

    def separated(self, a: str, b: str) -> bool:
        """Whether the test supports a difference between ``a`` and ``b``."""
        return self.rejects and self.pvalues.get((a, b), 1.0) < ALPHA

    def compare(self, a: str, b: str) -> str:
        """``>`` (a better), ``<`` (a worse) or ``=`` (not separated) for two tested defenses."""
        if not self.separated(a, b):
            return "="
        return ">" if (self.defenses[a].score or 0.0) > (self.defenses[b].score or 0.0) else "<"

    @property
    def separated_pairs(self) -> int:
        return sum(self.separated(a, b) for a, b in combinations(self.tested, 2))

    @property
    def pairs(self) -> int:
        return len(self.tested) * (len(self.tested) - 1) // 2


def analyse(scores: Scores, reference: str = "none", excluded: list[tuple[str, int]] | None = None,
            resamples: int = RESAMPLES) -> Analysis:
    """The paired test and intervals of one view's scores (module doc)."""
    defenses = sorted({d for _, d in scores}, key=lambda d: (d != reference, d))
    by_defense: dict[str, dict[tuple[str, int], float]] = {d: {} for d in defenses}
    for (attack, defense), seeds in scores.items():
        for seed, value in seeds.items():
            by_defense[defense][(attack, seed)] = value
    blocks = sorted(by_defense.get(reference, {}))
    tested = [d for d in defenses if blocks and all(b in by_defense[d] for b in blocks)]
    analysis = Analysis(blocks=blocks, excluded_blocks=sorted(excluded or []), tested=tested,
                        untested=[d for d in defenses if d not in tested], friedman=None)
    rng = np.random.default_rng(RNG_SEED)
    if tested:
        table = np.array([[by_defense[d][b] for b in blocks] for d in tested])
        aggregates = _aggregate(table, blocks)
        intervals = _intervals(stratified_bootstrap(table, blocks, resamples, rng))
        for i, name in enumerate(tested):
            analysis.defenses[name] = DefenseSummary(name, float(aggregates[i]),
                                                     intervals[i] if _max_seeds(blocks) > 1 else None,
                                                     _max_seeds(blocks), len(blocks))
        if len(tested) >= 3 and len(blocks) >= 2:
            _paired_test(analysis, table, reference)
    for name in analysis.untested:
        own = sorted(by_defense[name])
        values = np.array([[by_defense[name][b] for b in own]])
        analysis.defenses[name] = DefenseSummary(
            name, float(_aggregate(values, own)[0]) if own else None,
            _intervals(stratified_bootstrap(values, own, resamples, rng))[0] if _max_seeds(own) > 1 else None,
            _max_seeds(own), len(own))
    top = [d for d in analysis.order if d in tested and d != reference][:TOP]
    analysis.improvement = [(a, b, probability_of_improvement(by_defense[a], by_defense[b]))
                            for a, b in combinations(top, 2)]
    return analysis


def _paired_test(analysis: Analysis, table: np.ndarray, reference: str) -> None:
    tested = analysis.tested
    with warnings.catch_warnings():  # every defense scoring the same on every block: chi2 NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        chi2, p = stats.friedmanchisquare(*table)
    if math.isnan(chi2):
        chi2, p = 0.0, 1.0
    analysis.friedman = (float(chi2), len(tested) - 1, float(p))
    pairs = list(combinations(range(len(tested)), 2))
    raw = [wilcoxon_p(table[i], table[j]) for i, j in pairs]
    adjusted = multipletests(raw, method="holm")[1]
    for (i, j), value in zip(pairs, adjusted):
        analysis.pvalues[(tested[i], tested[j])] = analysis.pvalues[(tested[j], tested[i])] = float(value)
    ranks = stats.rankdata(-table, axis=0).mean(axis=1)  # rank 1 = the best score of a block
    for i, name in enumerate(tested):
        summary = analysis.defenses[name]
        summary.mean_rank = float(ranks[i])
        if name != reference and reference in tested:
            summary.p_versus_none = analysis.pvalues[(name, reference)]
            verdict = analysis.compare(name, reference)
            summary.versus_none = {">": "better", "<": "worse", "=": "not distinguishable"}[verdict]


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired ``x`` and ``y`` (1 when they never differ)."""
    if np.array_equal(x, y):
        return 1.0
    return float(stats.wilcoxon(x, y, zero_method="wilcox").pvalue)


def _aggregate(table: np.ndarray, blocks: list[tuple[str, int]]) -> np.ndarray:
    """Mean over attacks of the mean over each attack's seeds, per row of ``table``."""
    attacks = sorted({a for a, _ in blocks})
    columns = [[j for j, (a, _) in enumerate(blocks) if a == attack] for attack in attacks]
    return np.mean([table[:, c].mean(axis=1) for c in columns], axis=0)


def stratified_bootstrap(table: np.ndarray, blocks: list[tuple[str, int]], resamples: int,
                         rng: np.random.Generator) -> np.ndarray:
    """``[rows, resamples]`` aggregate scores of ``table`` (``[rows, blocks]``) with each
    attack's seeds resampled with replacement, the same draws for every row (paired)."""
    attacks = sorted({a for a, _ in blocks})
    total = np.zeros((table.shape[0], resamples))
    for attack in attacks:
        columns = np.array([j for j, (a, _) in enumerate(blocks) if a == attack])
        draws = rng.integers(0, len(columns), size=(resamples, len(columns)))
        total += table[:, columns[draws]].mean(axis=2)
    return total / len(attacks)


def _intervals(samples: np.ndarray) -> list[tuple[float, float]]:
    low, high = np.percentile(samples, [2.5, 97.5], axis=1)
    return [(float(lo), float(hi)) for lo, hi in zip(low, high)]


def _max_seeds(blocks: list[tuple[str, int]]) -> int:
    counts: dict[str, int] = {}
    for attack, _ in blocks:
        counts[attack] = counts.get(attack, 0) + 1
    return max(counts.values(), default=0)


def probability_of_improvement(a: dict[tuple[str, int], float], b: dict[tuple[str, int], float]) -> float:
    """P(A's score > B's) on a random seed of a random attack both were scored on, ties half:
    the mean over attacks of Mann-Whitney U / (m n) of the two defenses' seeds."""
    attacks = sorted({x for x, _ in a} & {x for x, _ in b})
    shares = []
    for attack in attacks:
        x = [v for (att, _), v in sorted(a.items()) if att == attack]
        y = [v for (att, _), v in sorted(b.items()) if att == attack]
        u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
        shares.append(float(u) / (len(x) * len(y)))
    return float(np.mean(shares)) if shares else math.nan
