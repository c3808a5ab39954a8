"""PNG figures: one strip per cell (what the trigger does, before and after the defense); ASR
against poison rate over a grid is drawn by ``benchmark.rate_figure``, which needs no model.

Figures are written atomically beside the results folder (``spec.figures_folder``) with a fixed size and dpi, so the
leaderboard can link them (see ``leaderboard.render``) and reruns give the same files.
"""

from __future__ import annotations

import logging
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
from benchmark.rate_figure import PALETTE, save  # noqa: E402
from benchmark.spec import RunSpec, figures_folder  # noqa: E402
from defenses import Defense  # noqa: E402
from defenses.base import ModelPredictor  # noqa: E402

log = logging.getLogger(__name__)

IGNORE_COLOUR = (0.0, 0.0, 0.0)


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


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
