"""The attack x defense matrices as PNG heatmaps, with the numbers printed in the cells.

Colour scales are fixed (0-100 for every metric, so two heatmaps compare at a glance) and
sequential: post ASR in ``YlOrRd`` (darker red: the backdoor survives), DER and AUROC in
``YlGnBu`` (darker blue: a better defense or detector). Text is black on light cells and white
on dark ones. The PNG is written without a timestamp or version metadata, so the same results
give the same bytes on the same matplotlib.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.store import write_if_changed  # noqa: E402
from leaderboard.matrices import COLOUR_MAPS, Matrix, View  # noqa: E402

log = logging.getLogger(__name__)



def heatmap_png(view: View, matrix: Matrix) -> bytes:
    """One matrix as a PNG: cells coloured by the mean, labelled ``mean`` and ``± CI``."""
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
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(matrix.rows):
        for j, column in enumerate(matrix.columns):
            found = matrix.spread(row, column)
            if found is None:
                ax.text(j, i, "–", ha="center", va="center", fontsize=8, color="black")
                continue
            label = f"{100 * found.mean:.1f}"
            if found.half_width is not None:
                label += f"\n±{100 * found.half_width:.1f}"
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


def write_heatmaps(views: list[View], figure_dir: Path) -> list[Path]:
    """Write every matrix of every view to ``figure_dir``; a file whose bytes would not change
    is left untouched, so re-rendering the same results changes nothing on disk."""
    written = []
    for view in views:
        for matrix in view.matrices:
            path = figure_dir / view.heatmap_name(matrix)
            if write_if_changed(path, heatmap_png(view, matrix)):
                log.info("wrote %s", path)
            written.append(path)
    return written


def write_poison_rate_figure(results_dir: Path | str, figure_dir: Path) -> Path | None:
    """``asr_vs_poison_rate.png`` from the undefended results, when they hold two or more poison
    rates (one line per model and attack that has several, mean over seeds)."""
    from benchmark.figures import asr_vs_poison_rate
    from leaderboard.render import load_results

    undefended = [r for r in load_results(results_dir) if r["defense"] == "none"]
    rates: dict[tuple, set] = defaultdict(set)
    for r in undefended:
        rates[(r["dataset"], r["model"], r["attack"])].add(r["poison_rate"])
    undefended = [r for r in undefended if len(rates[(r["dataset"], r["model"], r["attack"])]) > 1]
    return asr_vs_poison_rate(undefended, figure_dir / "asr_vs_poison_rate.png")
