"""How far the same cells agree when run on other hardware (the GPU section of the leaderboard).

A cell's key names its seed but not its device, so a cell run on a GPU and on the CPU has one
key: the two are matched by it. The difference of a metric is taken seed for seed, and compared
with the CPU's standard deviation over the seeds of that setting (the same cell but for its
seed): a difference smaller than what reseeding the CPU run moves is within the spread the
leaderboard already shows. The attacked model's own numbers (clean mIoU, ASR) are shared by
every defense cell of that model, so they are counted once per trained model (``artifact``),
not once per cell; the defended numbers are counted per cell.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict

from leaderboard.stats import MISSING

AGREEMENT_METRICS = [("clean_miou", "clean mIoU"), ("asr", "ASR"), ("post_clean_miou", "post mIoU"),
                     ("post_asr", "post ASR"), ("der", "DER"), ("detection_auroc", "AUROC")]
MODEL_METRICS = {"clean_miou", "asr"}
"""Metrics of the attacked model before any defense: one value per trained model."""
AGREEMENT_HEADERS = ["metric", "matched", "mean |GPU − CPU|", "max |GPU − CPU| (model / attack / defense)",
                     "within the CPU seed std"]


def agreement_rows(reference: list[dict], other: list[dict]) -> list[list[str]]:
    """Per metric: how many (cell, seed) pairs both sets hold (trained models, for the attacked
    model's own metrics), the mean and largest absolute difference in percentage points, and the
    share of pairs whose difference is at most the reference's standard deviation over its
    seeds for that cell, or for that attacked model (cells or models with 2+ seeds)."""
    by_cell = {r["cell"]: r for r in reference}
    seeds_of: dict[tuple, list[dict]] = defaultdict(list)
    models_of: dict[tuple, dict[str, dict]] = defaultdict(dict)  # one record per trained model
    for r in reference:
        seeds_of[setting(r)].append(r)
        models_of[setting(r, with_defense=False)].setdefault(r.get("artifact") or r["cell"], r)
    rows = []
    for key, title in AGREEMENT_METRICS:
        differences: list[tuple[float, dict]] = []
        within = judged = 0
        unit = "model" if key in MODEL_METRICS else "cell"
        counted: set[str] = set()
        for r in other:
            match = by_cell.get(r["cell"])
            if match is None or r.get(key) is None or match.get(key) is None:
                continue
            if key in MODEL_METRICS:  # once per trained model: every defense cell repeats its numbers
                model = r.get("artifact") or r["cell"]
                if model in counted:
                    continue
                counted.add(model)
            difference = abs(r[key] - match[key])
            differences.append((difference, r))
            spread = (models_of[setting(r, with_defense=False)].values() if key in MODEL_METRICS
                      else seeds_of[setting(r)])
            values = [s[key] for s in spread if s.get(key) is not None]
            if len(values) >= 2:
                judged += 1
                within += difference <= statistics.stdev(values)
        if not differences:
            continue
        largest, where = max(differences, key=lambda item: (item[0], item[1]["cell"]))
        defense = MISSING if key in MODEL_METRICS else where["defense"]
        rows.append([title, f"{len(differences)} {unit}{'s' if len(differences) != 1 else ''}",
                     f"{100 * statistics.fmean(d for d, _ in differences):.1f}",
                     f"{100 * largest:.1f} ({where['model']} / {where['attack']} / {defense})",
                     f"{within} of {judged}" if judged else MISSING])
    return rows


def setting(result: dict, with_defense: bool = True) -> tuple:
    """Everything that names a cell but its seed (and the machine it ran on); without the
    defense, what names the attacked model but its seed."""
    model = (result["dataset"], result["model"], result["attack"], json.dumps(result.get("attack_params"), sort_keys=True),
             result.get("poison_rate"))
    if not with_defense:
        return model
    return model + (result["defense"], json.dumps(result.get("defense_params"), sort_keys=True))
