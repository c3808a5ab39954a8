"""ASR against poison rate over a grid, as a PNG, from result records alone.

Apart from the cell figures (``benchmark.figures``, which rebuild models and datasets) so that
``leaderboard`` draws it without importing the model zoo, whose libraries (timm,
segmentation-models-pytorch, torchvision) cost seconds of every command's start. The cell
figures share its palette and PNG writer.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, and no GUI toolkit needed on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmark.store import write_if_changed  # noqa: E402

log = logging.getLogger(__name__)

DPI = 100
# fixed, so class c has one colour in every figure: tab20's saturated colours first, then the light ones
PALETTE = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]


def asr_vs_poison_rate(results: list[dict], path: Path) -> Path | None:
    """ASR (solid) and post-defense ASR (dashed, one per defense) against poison rate, one
    colour per (dataset, model, attack), means over seeds; None (nothing written) when the
    results hold fewer than two poison rates."""
    if len({r["poison_rate"] for r in results}) < 2:
        return None
    asr: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    post: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen_models = set()
    for r in results:
        line = (r["dataset"], r["model"], r["attack"])
        if r.get("artifact", r["cell"]) not in seen_models and r.get("asr") is not None:
            seen_models.add(r.get("artifact", r["cell"]))  # each attacked model's ASR counted once
            asr[line][r["poison_rate"]].append(r["asr"])
        if r["defense"] != "none" and r.get("post_asr") is not None:
            post[line + (r["defense"],)][r["poison_rate"]].append(r["post_asr"])
    datasets = {r["dataset"] for r in results}
    lines = sorted(set(asr) | {key[:3] for key in post})
    defenses = sorted({key[3] for key in post})
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1))]

    figure, ax = plt.subplots(figsize=(7.5, 4.5))
    for number, line in enumerate(lines):
        colour = PALETTE[number % len(PALETTE)]
        name = "/".join(line if len(datasets) > 1 else line[1:])
        _plot(ax, asr.get(line, {}), colour, "-", name)
        for d, defense in enumerate(defenses):
            _plot(ax, post.get(line + (defense,), {}), colour, styles[d % len(styles)], f"{name} + {defense}")
    ax.set_xlabel("poison rate (%)")
    ax.set_ylabel("ASR (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title("ASR (solid) and post-defense ASR against poison rate" if post else "ASR against poison rate",
                 fontsize=10)
    figure.tight_layout()
    save(figure, path)
    return path


def save(figure: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    if write_if_changed(path, buffer.getvalue()):
        log.info("wrote %s", path)


def _plot(ax: plt.Axes, points: dict[float, list[float]], colour: tuple, style: str | tuple, label: str) -> None:
    if not points:
        return
    rates = sorted(points)
    ax.plot([100 * r for r in rates], [100 * float(np.mean(points[r])) for r in rates],
            color=colour, linestyle=style, marker="o", markersize=3, label=label)
