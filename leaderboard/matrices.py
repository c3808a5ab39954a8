"""The views a reader looks at first: attack x defense matrices per model, and rankings.

A *view* is one (dataset, model, poison rate): its matrices have a row per attack and a column
per defense, and each cell holds the per-seed values of one metric, shown as mean (min–max)
over its seeds (``leaderboard.stats``). ``none`` is the undefended column of the post-ASR
matrix (its post ASR is the attack's ASR); DER and backdoor removal leave it out (no effect
by definition), and the AUROC matrix keeps only the defenses that score inputs.

Rankings are per view: models differ in which attacks and defenses (and how many seeds) they
were crossed with, so a ranking over all of them would compare unequal sets. Defenses are
ranked by their harm-aware score (``benchmark.metrics.harm_aware_score``, aggregated and tested
in ``leaderboard.significance``); the other columns explain it.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from benchmark.metrics import MIN_LIFT
from leaderboard import harm
from leaderboard.significance import Analysis, DefenseSummary, Scores, analyse
from leaderboard.stats import MISSING, Spread, count_text, fixed, spread

Label = Callable[[dict], str]

COLOUR_MAPS = {"post_asr": "YlOrRd", "der": "YlGnBu", "detection_auroc": "YlGnBu", "backdoor_removal": "RdYlBu"}
"""Matplotlib colour map of each matrix metric (heatmaps and the HTML page): post ASR red where
the backdoor survives, DER and AUROC blue where the defense works; backdoor removal diverging,
red where the defense strengthened the attack, blue where it removed the backdoor."""
COLOUR_RANGES = {"backdoor_removal": (-1.0, 1.0)}
"""Colour scale of a metric (fractions) when it is not [0, 1]; values beyond it saturate."""


@dataclass
class Matrix:
    """``rows`` x ``columns`` cells, each the per-seed values of ``metric``."""

    metric: str
    title: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], list[float | None]] = field(default_factory=dict)

    def spread(self, row: str, column: str) -> Spread | None:
        return spread(self.cells.get((row, column), []))

    def text(self, row: str, column: str) -> str:
        found = self.spread(row, column)
        return MISSING if found is None else found.text()

    def seeds_note(self) -> str:
        """``n = 3 seeds per cell; 1 in columns abl, spectral; 2 in row object_to_object``: how
        many seeds each cell's range covers, the exceptions grouped by column, then by row."""
        counts = {(row, column): found.n for row in self.rows for column in self.columns
                  if (found := self.spread(row, column)) is not None}
        if not counts:
            return "no results"
        tally: dict[int, int] = defaultdict(int)
        for n in counts.values():
            tally[n] += 1
        usual = max(tally, key=lambda n: (tally[n], n))
        notes = [f"n = {usual} seed{'s' if usual != 1 else ''} per cell"]
        odd = {cell: n for cell, n in counts.items() if n != usual}
        unexplained = dict(counts)  # cells no column or row note covers yet
        for axis, names, label in ((1, self.columns, "column"), (0, self.rows, "row")):
            groups: dict[int, list[str]] = defaultdict(list)
            for name in names:
                line = [cell for cell in unexplained if cell[axis] == name]
                held = {odd.get(cell) for cell in line}
                if line and len(held) == 1 and None not in held:
                    groups[held.pop()].append(name)
            for n in sorted(groups):
                notes.append(f"{n} in {label}{'s' if len(groups[n]) > 1 else ''} {', '.join(groups[n])}")
                unexplained = {cell: m for cell, m in unexplained.items() if cell[axis] not in groups[n]}
        notes += [f"{n} for {row} / {column}" for (row, column), n in sorted(odd.items()) if (row, column) in unexplained]
        return "; ".join(notes)


@dataclass
class View:
    """The matrices of one (dataset, model, poison rate)."""

    dataset: str
    model: str
    poison_rate: float
    matrices: list[Matrix]
    results: list[dict] = field(repr=False)
    """The view's results, which its rankings aggregate."""
    scores: Scores = field(default_factory=dict, repr=False)
    """Harm-aware score of each (attack, defense) cell, per seed, where defined."""
    excluded: list[tuple[str, int]] = field(default_factory=list, repr=False)
    """(attack, seed) of attacked models whose backdoor lift is below ``MIN_LIFT``."""

    @functools.cached_property
    def analysis(self) -> Analysis:
        """The paired test and bootstrap intervals of the defenses' scores (computed once)."""
        return analyse(self.scores, excluded=self.excluded)

    @property
    def seeds(self) -> list[int]:
        return sorted({r["seed"] for r in self.results})

    @property
    def title(self) -> str:
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''}"
        poison = "" if self.poison_rate < 0 else f", poison {100 * self.poison_rate:g}%"
        return f"{self.dataset} / {self.model}{poison} ({seeds})"

    @property
    def slug(self) -> str:
        """A file-name-safe id, e.g. ``synthetic-unet-p10``."""
        poison = "" if self.poison_rate < 0 else f"-p{100 * self.poison_rate:g}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset}-{self.model}{poison}")

    def heatmap_name(self, matrix: Matrix) -> str:
        """File name of a matrix's heatmap, e.g. ``heatmap-synthetic-unet-p10-der.png``."""
        return f"heatmap-{self.slug}-{matrix.metric}.png"

    @property
    def cd_name(self) -> str:
        """File name of the view's critical-difference diagram, e.g. ``cd-synthetic-unet-p10.png``."""
        return f"cd-{self.slug}.png"


def views(results: list[dict], attack_label: Label, defense_label: Label) -> list[View]:
    """One view per (dataset, model, poison rate) in the results. A view of undefended
    cells only is left out when the same model has defended cells at another rate: such runs
    measure ASR against poison rate (a figure), not defenses. The most complete view comes
    first (most seeds, then most results): the grid's main matrix, not the alphabetically first."""
    out = []
    groups = _view_groups(results)
    order = sorted(groups, key=lambda key: (-len({r["seed"] for r in groups[key]}), -len(groups[key]), key))
    for dataset, model, rate in order:
        group = groups[(dataset, model, rate)]
        attacks = sorted({attack_label(r) for r in group})
        defenses = sorted({defense_label(r) for r in group}, key=lambda d: (d != "none", d))
        post_asr = Matrix("post_asr", "post-defense ASR" + (" (none = undefended ASR)" if "none" in defenses else ""),
                          attacks, defenses)
        defended = [d for d in defenses if d != "none"]
        der = Matrix("der", "DER (50 = no effect, 100 = backdoor removed at no cost)", attacks, defended)
        removal = Matrix("backdoor_removal", "backdoor removal (share of the lift over the clean model removed; "
                         "0 = no effect, negative = attack strengthened)", attacks, defended)
        auroc = Matrix("detection_auroc", "detection AUROC of triggered vs clean test images", attacks, [])
        scores: Scores = {}
        excluded = set()
        for result in group:
            cell = (attack_label(result), defense_label(result))
            post_asr.cells.setdefault(cell, []).append(result.get("post_asr"))
            if result["defense"] != "none":
                der.cells.setdefault(cell, []).append(result.get("der"))
                removal.cells.setdefault(cell, []).append(harm.backdoor_removal(result))
            if result.get("detection_auroc") is not None:
                auroc.cells.setdefault(cell, []).append(result["detection_auroc"])
            score = harm.harm_score(result)
            if score is not None:
                scores.setdefault(cell, {})[result["seed"]] = score
            elif _lift(result) is not None and _lift(result) < MIN_LIFT:
                excluded.add((cell[0], result["seed"]))
        auroc.columns = sorted({column for _, column in auroc.cells})
        matrices = [m for m in (post_asr, der, removal, auroc) if m.columns]
        out.append(View(dataset, model, rate, matrices, group, scores, sorted(excluded)))
    return out


def _lift(result: dict) -> float | None:
    asr, baseline = result.get("asr"), result.get("baseline_asr")
    return None if asr is None or baseline is None else asr - baseline


def _view_groups(results: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for result in results:
        groups[(result["dataset"], result["model"], _rate(result))].append(result)
    defended = {key[:2] for key, group in groups.items() if any(r["defense"] != "none" for r in group)}
    return {key: group for key, group in groups.items()
            if key[:2] not in defended or any(r["defense"] != "none" for r in group)}


def defense_ranking(view: View, attack_label: Label, defense_label: Label) -> list[list[str]]:
    """Defenses (``none`` included, the reference) by aggregate harm-aware score, best first:
    its bootstrap interval and seeds, the paired test's mean rank and verdict against ``none``,
    then what the score is made of (mean clipped removal, mean mIoU cost, collapsed cells, cells
    whose ASR rose by more than 5 points), the field's mean DER and the worst post ASR."""
    analysis = view.analysis
    groups = _grouped(view.results, defense_label)
    rows = []
    for position, name in enumerate(analysis.order):
        summary, group = analysis.defenses[name], groups[name]
        removal = [_clip(harm.backdoor_removal(r)) for r in group]
        worst = max(_means_by(group, _view_attack(attack_label), "post_asr").items(),
                    key=lambda item: (item[1], item[0]), default=None)
        worst_text = MISSING if worst is None else f"{100 * worst[1]:.1f} ({worst[0][-1]})"
        rows.append((position, name, [
            name, score_text(summary.score, summary.interval), str(summary.seeds),
            MISSING if summary.mean_rank is None else f"{summary.mean_rank:.1f}",
            versus_none_text(summary, analysis),
            percent(_mean(removal)), percent(_mean(harm.miou_cost(r) for r in group)),
            count_text(harm.collapsed(r) for r in group), count_text(harm.asr_raised(r) for r in group),
            MISSING if name == "none" else percent(_mean(r.get("der") for r in group)),
            worst_text, str(len(group))]))
    return _ranked(rows)


def score_text(score: float | None, interval: tuple[float, float] | None) -> str:
    """``31.2 [24.0, 38.1]``: a score and its 95% bootstrap interval, in points."""
    if score is None:
        return MISSING
    text = fixed(100 * score)
    return text if interval is None else f"{text} [{fixed(100 * interval[0])}, {fixed(100 * interval[1])}]"


def versus_none_text(summary: DefenseSummary, analysis: Analysis) -> str:
    """The paired test's verdict against no defense, or why there is none."""
    if analysis.friedman is None:
        return MISSING  # too few defenses or blocks: no test at all
    if summary.name not in analysis.tested:
        return f"not tested ({summary.seeds} seed{'s' if summary.seeds != 1 else ''})"
    if summary.name == "none":
        return "reference"
    return f"{summary.versus_none} (p = {p_text(summary.p_versus_none)})"


def p_text(p: float | None) -> str:
    return MISSING if p is None else f"{p:.2g}"


def attack_ranking(results: list[dict], attack_label: Label, defense_label: Label) -> list[list[str]]:
    """Attacks by mean post ASR over the defenses (the one that survives best first): that
    mean, the undefended ASR, the baseline ASR, the lift over it, the mean clipped backdoor
    removal the defenses achieved, the defense that lowers ASR most, cells."""
    rows = []
    for name, group in _grouped(results, attack_label).items():
        defended = [r for r in group if r["defense"] != "none"]
        post = _per_seed_spread(defended, lambda r: r.get("post_asr"))
        asr = _per_seed_spread(group, lambda r: r.get("asr"))
        baseline = _per_seed_spread(group, lambda r: r.get("baseline_asr"))
        lift = _per_seed_spread(group, _lift)
        removal = _mean(_clip(harm.backdoor_removal(r)) for r in defended)
        best = min(_means_by(defended, defense_label, "post_asr").items(),
                   key=lambda item: (item[1], item[0]), default=None)
        best_text = MISSING if best is None else f"{best[0]} ({100 * best[1]:.1f})"
        rows.append((-(post.mean if post else -1), name,
                     [name, _text(post), _text(asr), _text(baseline), _text(lift), percent(removal), best_text,
                      str(len(defended))]))
    return _ranked(rows)


DEFENSE_RANKING_HEADERS = ["rank", "defense", "harm-aware score [95% CI]", "seeds", "mean rank", "vs none (Holm p)",
                           "mean removal", "mean mIoU cost", "collapsed", "ASR raised > 5 pts", "mean DER",
                           "worst post ASR (attack)", "cells"]
ATTACK_RANKING_HEADERS = ["rank", "attack", "mean post ASR", "mean ASR (undefended)", "mean baseline ASR",
                          "mean lift", "mean removal by defenses", "strongest defense (post ASR)", "defended cells"]


# --- helpers -----------------------------------------------------------------------------------

def _ranked(rows: list[tuple[float, str, list[str]]]) -> list[list[str]]:
    return [[str(rank)] + cells for rank, (_, _, cells) in enumerate(sorted(rows), start=1)]


def _per_seed_spread(results: Iterable[dict], value: Callable[[dict], float | None]) -> Spread | None:
    """Mean per seed, then the mean and range of the seeds' means."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for result in results:
        v = value(result)
        if v is not None:
            by_seed[result["seed"]].append(v)
    return spread(sum(values) / len(values) for _, values in sorted(by_seed.items()))


def _means_by(results: Iterable[dict], label: Callable[[dict], object], key: str) -> dict:
    """Mean of ``key`` (over seeds and cells) for each ``label``."""
    groups: dict = defaultdict(list)
    for result in results:
        if result.get(key) is not None:
            groups[label(result)].append(result[key])
    return {name: sum(v) / len(v) for name, v in groups.items()}


def _view_attack(attack_label: Label) -> Callable[[dict], tuple]:
    """An attack within one view: worst cases are taken per (dataset, model, poison, attack)."""
    return lambda r: (r["dataset"], r["model"], _rate(r), attack_label(r))


def _grouped(results: Iterable[dict], label: Label) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        groups[label(result)].append(result)
    return {name: groups[name] for name in sorted(groups)}


def _clip(removal: float | None) -> float | None:
    """Backdoor removal as the score counts it: within [-1, 1]."""
    return None if removal is None else min(1.0, max(-1.0, removal))


def _mean(values: Iterable[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def percent(value: float | None) -> str:
    return MISSING if value is None else fixed(100 * value)


def _text(found: Spread | None) -> str:
    return MISSING if found is None else found.text()


def _rate(result: dict) -> float:
    rate = result.get("poison_rate")
    return -1.0 if rate is None else float(rate)

