"""PNG figures: one strip per cell (what the trigger does, before and after the defense) and
ASR against poison rate over a grid.

Figures are written atomically beside the results folder (``spec.figures_folder``) with a fixed size and dpi, so the
leaderboard can link them (see ``leaderboard.render``) and reruns give the same files.
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
import torch  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from attacks import Attack  # noqa: E402
from benchmark import artifacts, datasets, poisoning  # noqa: E402
from benchmark.datasets import IGNORE_INDEX, Split  # noqa: E402
from benchmark.engine import resolve_device, seed_everything, to_input  # noqa: E402
from benchmark.poisoning import CHUNK  # noqa: E402
from benchmark.spec import RunSpec, figures_folder  # noqa: E402
from benchmark.store import write_if_changed  # noqa: E402
from defenses import Defense  # noqa: E402
from defenses.base import ModelPredictor  # noqa: E402

log = logging.getLogger(__name__)

DPI = 100
IGNORE_COLOUR = (0.0, 0.0, 0.0)
# fixed, so class c has one colour in every figure: tab20's saturated colours first, then the light ones
PALETTE = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20").colors[1::2]


def cell_figure(spec: RunSpec, result: dict) -> Path:
    """Draw the strip of one finished cell to ``<figures folder>/<cell>.png`` and return the path.

    Panels, for the first test image with a non-empty attack region: clean image, ground truth,
    the attacked model's prediction on it, the triggered image, the attacked model's
    prediction on that, and the defended predictor's prediction on the triggered image.
    """
    path = figures_folder(spec) / f"{result['cell']}.png"
    if path.is_file():  # a finished cell's figure is never redrawn
        return path
    device = resolve_device(spec.device)
    data = datasets.load(spec.dataset, spec.workdir)
    attack = poisoning.make_attack(spec, data)
    model, _ = artifacts.trained_model(spec, data, attack, device)
    index = first_attacked_image(data.test, attack)
    image = to_input(data.test.images[index:index + 1].to(device))
    masks = data.test.masks[index:index + 1].to(device).long()
    instances = None if data.test.instances is None else data.test.instances[index:index + 1].to(device)
    triggered = attack.trigger(image, masks, **attack.scene(instances)).clamp(0, 1)
    attacked = ModelPredictor(model)
    # before fitting: a model-repair defense may change the model in place
    clean_pred = attacked.predict(image)[0]
    triggered_pred = attacked.predict(triggered)[0]
    seed_everything(spec.seed)
    defense = Defense.registry.get(spec.defense).create(spec.defense_params)
    predictor = defense.fit(model, poisoning.clean_budget(spec, data, attack, device))
    defended_pred, rejected = predictor.predict(triggered)

    defended_title = f"{result['defense']} on triggered" + (" (rejected)" if bool(rejected[0]) else "")
    panels = [
        ("clean image", rgb(image[0])),
        ("ground truth", data.test.masks[index].long()),
        ("prediction (clean)", clean_pred[0]),
        ("triggered image", rgb(triggered[0])),
        ("prediction (triggered)", triggered_pred[0]),
        (defended_title, defended_pred[0]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 3.0))
    shown_classes: set[int] = set()
    for ax, (title, panel) in zip(axes, panels):
        if panel.ndim == 2:  # a label map
            shown_classes.update(int(c) for c in panel.unique().tolist() if c != IGNORE_INDEX)
            panel = colourise(panel)
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.suptitle(f"{result['dataset']} / {result['model']} / {result['attack']} at "
                    f"{100 * result['poison_rate']:g}% poison / {result['defense']}: ASR "
                    f"{_pct(result.get('asr'))}, post ASR {_pct(result.get('post_asr'))}", fontsize=10)
    handles = [Patch(color=PALETTE[c % len(PALETTE)], label=data.class_names[c]) for c in sorted(shown_classes)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8) or 1, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 0.95))
    save(figure, path)
    return path


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


def first_attacked_image(test: Split, attack: Attack) -> int:
    """Index of the first test image whose attack region is non-empty (0 if none has one)."""
    for start in range(0, len(test), CHUNK):
        instances = None if test.instances is None else test.instances[start:start + CHUNK]
        has_region = attack.attack_region(test.masks[start:start + CHUNK].long(), **attack.scene(instances))
        has_region = has_region.flatten(1).any(dim=1)
        if has_region.any():
            return start + int(has_region.nonzero()[0])
    log.warning("no test image has a non-empty attack region; drawing the first one")
    return 0


def colourise(mask: torch.Tensor) -> np.ndarray:
    """``[H,W]`` labels -> ``[H,W,3]`` colours of the fixed palette (ignore in black)."""
    labels = mask.cpu().numpy()
    colours = np.array(PALETTE)[labels % len(PALETTE)]
    colours[labels == IGNORE_INDEX] = IGNORE_COLOUR
    return colours


def rgb(image: torch.Tensor) -> np.ndarray:
    return image.float().cpu().permute(1, 2, 0).numpy()


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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
