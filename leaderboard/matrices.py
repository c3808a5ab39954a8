"""The views a reader looks at first: attack x defense matrices per model, and rankings.

A *view* is one (dataset, model, poison rate): its matrices have a row per attack and a column
per defense, and each cell holds the per-seed values of one metric, shown as mean ± 95% CI
(``leaderboard.stats``). ``none`` is the undefended column of the post-ASR matrix (its post ASR
is the attack's ASR); DER leaves it out (50 by definition), and the AUROC matrix keeps only the
defenses that score inputs.

Rankings are per view: models differ in which attacks and defenses (and how many seeds) they
were crossed with, so a ranking over all of them would compare unequal sets. A defense's mean
DER and mean mIoU cost are averaged per seed first and the interval is taken over those
per-seed means, so the spread is the seed-to-seed spread of the ranking's own number.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from leaderboard.stats import MISSING, Spread, spread

Label = Callable[[dict], str]

COLOUR_MAPS = {"post_asr": "YlOrRd", "der": "YlGnBu", "detection_auroc": "YlGnBu"}
"""Matplotlib colour map of each matrix metric (heatmaps and the HTML page): post ASR red where
the backdoor survives, DER and AUROC blue where the defense works."""


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


@dataclass
class View:
    """The matrices of one (dataset, model, poison rate)."""

    dataset: str
    model: str
    poison_rate: float
    matrices: list[Matrix]
    results: list[dict] = field(repr=False)
    """The view's results, which its rankings aggregate."""

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
        post_asr = Matrix("post_asr", "post-defense ASR (none = undefended ASR)", attacks, defenses)
        der = Matrix("der", "DER (50 = no effect, 100 = backdoor removed at no cost)", attacks,
                     [d for d in defenses if d != "none"])
        auroc = Matrix("detection_auroc", "detection AUROC of triggered vs clean test images", attacks, [])
        for result in group:
            cell = (attack_label(result), defense_label(result))
            post_asr.cells.setdefault(cell, []).append(result.get("post_asr"))
            if result["defense"] != "none":
                der.cells.setdefault(cell, []).append(result.get("der"))
            if result.get("detection_auroc") is not None:
                auroc.cells.setdefault(cell, []).append(result["detection_auroc"])
        auroc.columns = sorted({column for _, column in auroc.cells})
        matrices = [m for m in (post_asr, der, auroc) if m.columns]
        out.append(View(dataset, model, rate, matrices, group))
    return out


def _view_groups(results: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for result in results:
        groups[(result["dataset"], result["model"], _rate(result))].append(result)
    defended = {key[:2] for key, group in groups.items() if any(r["defense"] != "none" for r in group)}
    return {key: group for key, group in groups.items()
            if key[:2] not in defended or any(r["defense"] != "none" for r in group)}


def defense_ranking(results: list[dict], attack_label: Label, defense_label: Label) -> list[list[str]]:
    """Defenses by mean DER (best first): mean DER, worst-case post ASR over the attacks (and
    which attack), mean mIoU cost, cells. ``none`` is left out."""
    rows = []
    for name, group in _grouped(results, defense_label).items():
        if group[0]["defense"] == "none":
            continue
        der = _per_seed_spread(group, lambda r: r.get("der"))
        cost = _per_seed_spread(group, lambda r: _difference(r.get("clean_miou"), r.get("post_clean_miou")))
        worst = max(_means_by(group, _view_attack(attack_label), "post_asr").items(),
                    key=lambda item: (item[1], item[0]), default=None)
        worst_text = MISSING if worst is None else f"{100 * worst[1]:.1f} ({worst[0][-1]})"
        rows.append((-(der.mean if der else -1), name,
                     [name, _text(der), worst_text, _text(cost), str(len(group))]))
    return _ranked(rows)


def attack_ranking(results: list[dict], attack_label: Label, defense_label: Label) -> list[list[str]]:
    """Attacks by mean post ASR over the defenses (the one that survives best first): that
    mean, the undefended ASR, the baseline ASR, the defense that lowers it most, cells."""
    rows = []
    for name, group in _grouped(results, attack_label).items():
        defended = [r for r in group if r["defense"] != "none"]
        post = _per_seed_spread(defended, lambda r: r.get("post_asr"))
        asr = _per_seed_spread(group, lambda r: r.get("asr"))
        baseline = _per_seed_spread(group, lambda r: r.get("baseline_asr"))
        best = min(_means_by(defended, defense_label, "post_asr").items(),
                   key=lambda item: (item[1], item[0]), default=None)
        best_text = MISSING if best is None else f"{best[0]} ({100 * best[1]:.1f})"
        rows.append((-(post.mean if post else -1), name,
                     [name, _text(post), _text(asr), _text(baseline), best_text, str(len(defended))]))
    return _ranked(rows)


DEFENSE_RANKING_HEADERS = ["rank", "defense", "mean DER", "worst post ASR (attack)", "mean mIoU cost", "cells"]
ATTACK_RANKING_HEADERS = ["rank", "attack", "mean post ASR", "mean ASR (undefended)", "mean baseline ASR",
                          "strongest defense (post ASR)", "defended cells"]


# --- helpers -----------------------------------------------------------------------------------

def _ranked(rows: list[tuple[float, str, list[str]]]) -> list[list[str]]:
    return [[str(rank)] + cells for rank, (_, _, cells) in enumerate(sorted(rows), start=1)]


def _per_seed_spread(results: Iterable[dict], value: Callable[[dict], float | None]) -> Spread | None:
    """Mean per seed, then mean ± CI over the seeds' means."""
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


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _text(found: Spread | None) -> str:
    return MISSING if found is None else found.text()


def _rate(result: dict) -> float:
    rate = result.get("poison_rate")
    return -1.0 if rate is None else float(rate)

