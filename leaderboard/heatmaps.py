"""The figures of each view: attack x defense heatmaps and the critical-difference diagram.

Heatmaps print the numbers in the cells: the mean over seeds and, below it, the seed range.
Colour scales are fixed (0-100 for bounded metrics, so two heatmaps compare at a glance):
post ASR in ``YlOrRd`` (darker red: the backdoor survives), DER and AUROC in ``YlGnBu``
(darker blue: a better defense or detector), backdoor removal diverging in ``RdYlBu`` from
-100 (red: the attack strengthened) to 100 (blue: removed). Text is black on light cells and
white on dark ones.

The critical-difference diagram (``cd-<view>.png``, scikit-posthocs) places the defenses the
paired test compared at their mean rank over the (attack, seed) blocks (1 = best) and joins
with a bar the defenses the test does not separate (``leaderboard.significance``).

PNGs are written without a timestamp or version metadata, and only when their bytes change,
so the same results give the same files on the same matplotlib.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
import numpy as np  # noqa: E402

import pandas as pd  # noqa: E402
import scikit_posthocs  # noqa: E402

from benchmark.rate_figure import asr_vs_poison_rate  # noqa: E402
from benchmark.store import write_if_changed  # noqa: E402
from leaderboard.matrices import COLOUR_MAPS, COLOUR_RANGES, Matrix, View  # noqa: E402
from leaderboard.significance import ALPHA  # noqa: E402
from leaderboard.stats import fixed, range_text  # noqa: E402

log = logging.getLogger(__name__)



def heatmap_png(view: View, matrix: Matrix) -> bytes:
    """One matrix as a PNG: cells coloured by the mean, labelled with the mean and the seed range."""
    values = np.full((len(matrix.rows), len(matrix.columns)), np.nan)
    for i, row in enumerate(matrix.rows):
        for j, column in enumerate(matrix.columns):
            found = matrix.spread(row, column)
            if found is not None:
                values[i, j] = 100 * found.mean
    cmap = plt.get_cmap(COLOUR_MAPS.get(matrix.metric, "viridis")).with_extremes(bad="#dddddd")  # no result: grey
    width = 2.2 + 1.1 * len(matrix.columns)
    height = 1.4 + 0.55 * len(matrix.rows)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    low, high = COLOUR_RANGES.get(matrix.metric, (0.0, 1.0))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=100 * low, vmax=100 * high, aspect="auto")
    for i, row in enumerate(matrix.rows):
        for j, column in enumerate(matrix.columns):
            found = matrix.spread(row, column)
            if found is None:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="black")
                continue
            label = fixed(100 * found.mean)
            if found.n > 1:
                label += f"\n{range_text(100 * found.low, 100 * found.high, 0)}"
            dark = sum(cmap(image.norm(values[i, j]))[:3]) < 1.5
            ax.text(j, i, label, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(matrix.rows)), matrix.rows, fontsize=8)
    ax.set_xlabel("defense", fontsize=8)
    ax.set_ylabel("attack", fontsize=8)
    ax.set_title(f"{matrix.title}\n{view.title}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def cd_diagram_png(view: View) -> bytes | None:
    """The critical-difference diagram of a view's paired test; None without a test."""
    analysis = view.analysis
    if analysis.friedman is None:
        return None
    names = analysis.tested
    ranks = pd.Series({name: analysis.defenses[name].mean_rank for name in names})
    # no pair is compared unless Friedman rejects: then every defense shares one bar
    pvalues = pd.DataFrame([[1.0 if a == b or not analysis.separated(a, b) else analysis.pvalues[(a, b)]
                             for b in names] for a in names], index=names, columns=names)
    cycle = plt.get_cmap("tab10")
    palette = {name: "black" if name == "none" else to_hex(cycle(i % 10)) for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.22 * len(names)), dpi=100)
    artists = scikit_posthocs.critical_difference_diagram(ranks, pvalues, alpha=ALPHA, ax=ax, color_palette=palette,
                                                          label_fmt_left="{label} ({rank:.1f})",
                                                          label_fmt_right="({rank:.1f}) {label}",
                                                          label_props={"fontsize": 8})
    for line in artists["crossbars"]:  # a bar's points come from a set: fix their order for stable bytes
        for bar in line:
            x, y = bar.get_data()
            bar.set_data(sorted(x), y)
    chi2, dof, p = analysis.friedman
    ax.set_title(f"{view.title}: mean rank of the harm-aware score (1 = best)\n"
                 f"Friedman chi2({dof}) = {chi2:.1f}, p = {p:.2g}; bars join defenses that Wilcoxon-Holm "
                 f"does not separate (alpha {ALPHA:g}), {len(analysis.blocks)} blocks", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_heatmaps(views: list[View], figure_dir: Path) -> list[Path]:
    """Write every figure of every view to ``figure_dir``: each matrix's heatmap and the
    critical-difference diagram (:meth:`View.cd_name`, where the view has a paired test). A
    file whose bytes would not change is left untouched, so re-rendering the same results
    changes nothing on disk."""
    written = []
    for view in views:
        figures = [(view.heatmap_name(matrix), heatmap_png(view, matrix)) for matrix in view.matrices]
        figures.append((view.cd_name, cd_diagram_png(view)))
        for name, data in figures:
            if data is None:
                continue
            path = figure_dir / name
            if write_if_changed(path, data):
                log.info("wrote %s", path)
            written.append(path)
    return written


def write_poison_rate_figure(results_dir: Path | str, figure_dir: Path) -> Path | None:
    """``asr_vs_poison_rate.png`` from the undefended results, when they hold two or more poison
    rates (one line per model and attack that has several, mean over seeds)."""
    from leaderboard.render import load_results

    undefended = [r for r in load_results(results_dir) if r["defense"] == "none"]
    rates: dict[tuple, set] = defaultdict(set)
    for r in undefended:
        rates[(r["dataset"], r["model"], r["attack"])].add(r["poison_rate"])
    undefended = [r for r in undefended if len(rates[(r["dataset"], r["model"], r["attack"])]) > 1]
    return asr_vs_poison_rate(undefended, figure_dir / "asr_vs_poison_rate.png")
