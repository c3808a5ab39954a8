"""Result JSON files -> the Markdown leaderboard and a CSV export.

Results are data (one JSON file per cell, written by ``benchmark.runner.run``); the Markdown is
always rendered from them, never edited by hand. Rendering is deterministic: the same result
files give the same bytes (no timestamps, every collection sorted), so LEADERBOARD.md diffs
only when numbers change.

Figures convention: the Markdown is meant to live in the parent of the
results folder (``leaderboard/LEADERBOARD.md`` beside ``leaderboard/results/``), and figures
in ``<parent>/figures/``: ``<cell>.png`` per cell (``cell`` key of a result, as written by
``benchmark.figures.cell_figure``) and ``asr_vs_poison_rate.png``. Only files that exist are
linked, by paths relative to that parent (``figures/<cell>.png``); the figure column appears
when any cell has one. The attack x defense heatmaps
(``leaderboard.heatmaps``, written by ``python -m benchmark leaderboard --output FILE``) live in
the same folder as ``heatmap-<view>-<metric>.png`` and are linked above their matrix.

Views, in reading order: the findings of the paired test, the attack x defense matrices of each
model (post ASR, DER, backdoor removal, detection AUROC), rankings of defenses (by the
harm-aware score, with the paired test's verdicts, the critical-difference diagram
``cd-<view>.png`` and the pairwise separations) and of attacks, the full table, costs. A cell's
spread over seeds is its range, min to max (``leaderboard.stats``); differences between
defenses are claimed only where the paired test supports them (``leaderboard.significance``).
The harm-aware numbers are computed from a record's own fields when it predates them
(``leaderboard.harm``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tabulate import tabulate

from benchmark.engine import precision_name
from benchmark.errors import BenchmarkError
from benchmark.store import atomic_write_text, read_json
from leaderboard import harm, matrices
from leaderboard.agreement import AGREEMENT_HEADERS, agreement_rows
from leaderboard.findings import IMPROVEMENT_HEADERS, RANKING_TEXT, findings, improvement_rows, pairwise_rows
from leaderboard.stats import MISSING, spread_text

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("dataset", "model", "attack", "defense", "poison_rate", "seed", "cell")
METRIC_COLUMNS = [
    ("clean_miou", "clean mIoU"), ("asr", "ASR"), ("baseline_asr", "baseline ASR"), ("pba", "PBA"),
    ("post_clean_miou", "post mIoU"), ("post_asr", "post ASR"), ("post_pba", "post PBA"),
    ("der", "DER"), ("backdoor_removal", "removal"), ("miou_cost", "mIoU cost"), ("detection_auroc", "AUROC"),
]
OPTIONAL_COLUMNS = [("collateral_asr", "collateral ASR"), ("post_collateral_asr", "post collateral ASR")]
"""Shown only when some result has them (attacks with a control region), so older tables keep their bytes."""
ZOO_METRICS = """- **ASR, generalised**: a pixel counts as a hit when predicted as the label the attack wanted there (`poison_label` of its truth: the target for all-to-one rules, c + 1 mod C for an all-to-all rule). **Collateral ASR** (conditional and instance-level attacks): the same rate of the target on pixels where the trigger must not act (victims of images without the condition class; the victim instances other than the attacked one): low is what the attacker wants."""
NO_DEFENSE_BLANK = {"der", "backdoor_removal", "miou_cost"}
SEED_ATTACKS = {"image_level", "fine_grained"}
CSV_LEADING = ["dataset", "model", "attack", "poison_rate", "defense", "seed"]
REGENERATE = """\
```bash
for shard in leaderboard/shards/*.toml; do python -m benchmark run --config "$shard"; done
python -m benchmark leaderboard --results leaderboard/results --gpu-results leaderboard/results-gpu \\
    --output leaderboard/LEADERBOARD.md
python -m benchmark leaderboard --results leaderboard/results --gpu-results leaderboard/results-gpu \\
    --format html --output leaderboard/index.html
```"""
GPU_SECTION = """\
The same shards' cells run on a GPU (`--device cuda`), whose results live in their own folder \
(a cell's key does not name its device). Only the cells listed here ran there. The agreement table \
matches each GPU result with the CPU result of the same cell and seed: the absolute difference in \
points, and how often it is no larger than the standard deviation of that cell over the CPU's \
seeds (what a reseed moves). The attacked model's clean mIoU and ASR are counted once per trained \
model, the defended numbers once per cell."""
METRICS = """\
All numbers are percentages (fractions times 100, one decimal). `a (b–c)` is the mean over the \
`n` seeds of a cell and, in parentheses, the lowest and highest seed (one seed has no range; `n` \
is the full table's column and each matrix's note). The range is what the seeds gave, not a \
confidence interval: whether two defenses differ is decided by the paired test of the rankings, \
not by comparing ranges. "post" means through the defended predictor (a rejected input counts \
as not attacked and as wrong); {missing} = not applicable.

- **clean mIoU**: mean IoU on the clean test set, from one dataset-level confusion matrix \
(mean over classes present in the ground truth or the prediction).
- **ASR**: on triggered test images, the fraction of attack-region pixels (truth neither the \
target nor ignore; fine-grained attacks: the victim pixels) predicted as the target; \
**baseline ASR**: the same on a model trained without poison.
- **PBA**: mIoU on triggered test images with the attack region ignored: does the rest of \
the scene survive the trigger? Whole-image rules leave no such scene: under `image_level` only \
the target's own pixels remain (PBA is then 100, 50 or 33 as zero, one or two other classes are \
predicted on them), under `waba` (all-to-all) no pixel remains ({missing}).
- **backdoor removal**: (ASR − post ASR) / (ASR − baseline ASR), the share of the backdoor's \
lift over the clean model that the defense removed: 100 = back to the clean model, 0 = no \
effect, negative = the defense strengthened the attack; {missing} when the lift is below 5 points \
(nothing to remove). **mIoU cost**: clean mIoU − post mIoU. **collapsed**: post mIoU below half \
of the clean (unpoisoned) model's clean mIoU.
- **harm-aware score** (the rankings' number): backdoor removal clipped to [−100, 100] (at most 0 \
for a collapsed model: its low ASR is the collapse, not a removal) minus the mIoU cost clipped \
at 0. No effect scores 0; a defense that raises ASR or destroys the model scores below 0, so \
neither can rank above `none`; one point of mIoU weighs as much as one percent of the \
backdoor's lift. Cells whose lift is below 5 points have no score.
- **DER** (BackdoorBench, kept as the field's number): (max(0, ASR − post ASR) − max(0, clean \
mIoU − post mIoU) + 1) / 2; 50 = no effect, 100 = backdoor removed at no cost. It ignores ASR \
increases (scored like no effect), rewards a collapsed model (it predicts no target either) and \
uses raw ASR, which includes what the clean model predicts as the target anyway; the rankings \
therefore do not use it.
- **AUROC** (detectors only): area under the ROC curve of the detection score, clean vs \
triggered test images.""".format(missing=MISSING)


POISON_DETECTION = """\
Training-time defenses flag training samples (whole images, or segments: the pixels of one \
class in one image); the harness retrains without them and scores the flags against the hidden \
poison indicator. **AUROC** of the flag scores, **precision** and **recall** of the flagged \
samples (percent), flagged / poisoned / all samples, and the defense's wall seconds (flagging \
and retraining, or its own training) next to the attacked model's training."""


@dataclass
class Row:
    """One leaderboard row: the results (one per seed) of a (dataset, model, attack, poison, defense)."""

    dataset: str
    model: str
    attack: str
    poison_rate: float
    defense: str
    results: list[dict] = field(default_factory=list)

    def values(self, key: str) -> list[float | None]:
        if key in NO_DEFENSE_BLANK and self.results[0]["defense"] == "none":
            return []  # no defense: DER is 50, removal and cost 0 by definition and say nothing
        return [harm.value(r, key) for r in self.results]


def load_results(results_dir: str | Path) -> list[dict]:
    """All result records in ``results_dir``, sorted by dataset, model, attack, poison rate,
    defense, seed and cell key (unreadable files are skipped, with one warning each)."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise BenchmarkError(f"results folder {str(folder)!r} does not exist; run `python -m benchmark run` first")
    results = []
    for path in sorted(folder.glob("*.json")):
        record = read_json(path, unreadable="it is left out")
        if record is None:
            continue
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise BenchmarkError(f"{path} is not a result file (no {', '.join(missing)})")
        results.append(record)
    if not results:
        raise BenchmarkError(f"no result files (*.json) in {str(folder)!r}; run `python -m benchmark run` first")
    return sorted(results, key=lambda r: (r["dataset"], r["model"], r["attack"], _rate(r), r["defense"],
                                          r["seed"], r["cell"]))


COMMITTED_RESULTS = Path(__file__).parent / "results"


def regenerate_block(results_dir: str | Path) -> str:
    """How to regenerate this page: the committed grid's shards, or, for a user's own results,
    the leaderboard command on their folder."""
    if Path(results_dir).resolve() == COMMITTED_RESULTS.resolve():
        return REGENERATE
    return f"```bash\npython -m benchmark leaderboard --results {results_dir} --output LEADERBOARD.md\n```"


def render_leaderboard(results_dir: str | Path, gpu_results: str | Path | None = None) -> str:
    """The Markdown leaderboard of every result in ``results_dir``, linking the figures that
    exist (convention: module doc), so the same files always render the same bytes; with
    ``gpu_results``, a section for the same cells run on a GPU, and how far they agree."""
    results = load_results(results_dir)
    figure_dir = Path(results_dir).parent / "figures"
    figures = any((figure_dir / f"{r['cell']}.png").is_file() for r in results)
    attack_label = variant_labeller(results, "attack", "attack_params")
    defense_label = variant_labeller(results, "defense", "defense_params")
    rows = group_rows(results, attack_label, defense_label)

    parts = [
        "# Leaderboard: backdoor attacks and defenses on semantic segmentation",
        f"Rendered by `python -m benchmark leaderboard` from {len(results)} result file(s); do not edit "
        "by hand. To regenerate:",
        regenerate_block(results_dir),
        "## Configuration",
        configuration(results),
        "## Metrics",
        METRICS,
        *([ZOO_METRICS] if any(r["attack"] not in SEED_ATTACKS for r in results) else []),
    ]
    views = matrices.views(results, attack_label, defense_label)
    parts += ["## Findings",
              "What the paired test of each model's defenses supports (details in Rankings); a difference "
              "not named here is not resolved by these seeds.",
              "\n".join(f"- {' '.join(findings(view))}" for view in views),
              "## Attack x defense matrices",
              "One block per model: rows are attacks, columns defenses (`none` = undefended). Post ASR: "
              "lower is a better defense; DER and backdoor removal: higher is."]
    for view in views:
        parts.append(f"### {view.title}")
        for matrix in view.matrices:
            heatmap = figure_dir / view.heatmap_name(matrix)
            if heatmap.is_file():
                parts.append(f"![{matrix.title}: {view.title}](figures/{heatmap.name})")
            parts += [f"**{matrix.title}** ({matrix.seeds_note()})", matrix_table(matrix)]
    parts += [
        "## Rankings",
        RANKING_TEXT,
    ]
    for view in views:
        parts += [f"### Defenses: {view.title}", " ".join(findings(view)),
                  markdown_table(matrices.defense_ranking(view, attack_label, defense_label),
                                 matrices.DEFENSE_RANKING_HEADERS)]
        if (figure_dir / view.cd_name).is_file():
            parts.append(f"![critical-difference diagram: {view.title}](figures/{view.cd_name})")
        if view.analysis.rejects and view.analysis.separated_pairs:
            headers, table = pairwise_rows(view.analysis)
            parts += ["Pairwise (Wilcoxon-Holm): ▲ the row's defense is separated as better than the column's, "
                      "▼ as worse, · not separated; columns are the rows' numbers.", markdown_table(table, headers)]
        if view.analysis.improvement:
            parts += ["Probability of improvement of the top tested defenses (a random seed of a random attack; "
                      "ties half):", markdown_table(improvement_rows(view.analysis), IMPROVEMENT_HEADERS)]
        parts += [f"### Attacks: {view.title}",
                  markdown_table(matrices.attack_ranking(view.results, attack_label, defense_label),
                                 matrices.ATTACK_RANKING_HEADERS)]
    if (figure_dir / "asr_vs_poison_rate.png").is_file():
        parts.append("![ASR against poison rate](figures/asr_vs_poison_rate.png)")
    if any("poison_detection_auroc" in r for r in results):
        parts += ["## Poisoned-data detection", POISON_DETECTION,
                  poison_detection_table(results, attack_label, defense_label)]
    parts.append("## Full table")
    for dataset in sorted({row.dataset for row in rows}):
        parts += [f"### {dataset}", row_table([row for row in rows if row.dataset == dataset],
                                              figure_dir if figures else None)]
    parts += [
        "## Costs",
        COSTS_TEXT,
        cost_tables(results, defense_label),
    ]
    if gpu_results is not None:
        parts += gpu_section(results, load_results(gpu_results))
    return "\n\n".join(parts) + "\n"


def gpu_section(cpu: list[dict], gpu: list[dict]) -> list[str]:
    """The GPU results' own section: hardware and precision in its header, their configuration,
    their agreement with the CPU results, and their matrices (tables)."""
    attack_label = variant_labeller(gpu, "attack", "attack_params")
    defense_label = variant_labeller(gpu, "defense", "defense_params")
    parts = [f"## GPU: {hardware_header(gpu)}",
             GPU_SECTION + f" {len(gpu)} result file(s).",
             configuration(gpu),
             versions_note(cpu, gpu),
             "### Agreement with the CPU results",
             markdown_table(agreement_rows(cpu, gpu), AGREEMENT_HEADERS)]
    for view in matrices.views(gpu, attack_label, defense_label):
        parts.append(f"### GPU: {view.title}")
        for matrix in view.matrices:
            parts += [f"**{matrix.title}**", matrix_table(matrix)]
    return parts


def versions_note(cpu: list[dict], gpu: list[dict]) -> str:
    """The GPU cells' package versions next to the CPU cells' they are compared with."""
    ran, against = package_versions(gpu), package_versions(cpu)
    same = "the same as" if ran == against else "not those of"
    return f"Packages: the GPU cells ran with {ran}, {same} the CPU cells ({against})."


def package_versions(results: list[dict]) -> str:
    return distinct(", ".join(f"{k} {v}" for k, v in sorted(r["versions"].items()))
                    for r in results if r.get("versions"))


def hardware_header(results: list[dict]) -> str:
    """``NVIDIA H200, bf16 autocast, channels_last``: the devices and precisions of the results."""
    return "; ".join(sorted({f"{r.get('hardware', '?')}, {precision_name(r.get('device', 'cpu'))}" for r in results}))


def leaderboard_views(results_dir: str | Path) -> list[matrices.View]:
    """The attack x defense views of every result in ``results_dir`` (for the heatmaps)."""
    results = load_results(results_dir)
    return matrices.views(results, variant_labeller(results, "attack", "attack_params"),
                          variant_labeller(results, "defense", "defense_params"))


def export_csv(results_dir: str | Path, output: str | Path | None) -> None:
    """One CSV row per result: its scalar fields, plus ``attack.<k>`` / ``defense.<k>`` params.

    Other lists and dicts (per-class IoU, versions, reports) are left out; ``None`` is empty.
    ``output`` None writes to stdout; a path is written atomically.
    """
    rows = []
    for result in load_results(results_dir):
        row = {k: v for k, v in result.items() if _is_scalar(v)}
        for prefix in ("attack", "defense"):
            for key, value in (result.get(f"{prefix}_params") or {}).items():
                row[f"{prefix}.{key}"] = value if _is_scalar(value) else json.dumps(value, sort_keys=True)
        rows.append(row)
    keys = {key for row in rows for key in row}
    leading = [key for key in CSV_LEADING if key in keys]
    params = sorted(key for key in keys if "." in key)
    header = leading + sorted(keys - set(leading) - set(params)) + params
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if output is None:
        sys.stdout.write(buffer.getvalue())
    else:
        atomic_write_text(Path(output), buffer.getvalue())
        log.info("wrote %d result(s) to %s", len(rows), output)


# --- rows and tables ---------------------------------------------------------------------------

def variant_labeller(results: list[dict], name_key: str, params_key: str) -> Callable[[dict], str]:
    """A labeller that names a plugin and, when one name was run with several parameter sets,
    the parameters that differ (``fine_grained (victim=person)``), so variants are separate rows."""
    legacy = legacy_values(results, name_key, params_key)
    variants: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        variants[result[name_key]].append(_params(result, params_key, legacy))
    differing = {
        name: [key for key in sorted({k for p in params for k in p})
               if len({json.dumps(p.get(key), sort_keys=True) for p in params}) > 1]
        for name, params in variants.items()
    }

    def label(result: dict) -> str:
        keys = differing[result[name_key]]
        if not keys:
            return result[name_key]
        params = _params(result, params_key, legacy)
        return f"{result[name_key]} ({', '.join(f'{k}={_param_text(params.get(k))}' for k in keys)})"

    return label


def group_rows(results: list[dict], attack_label: Callable[[dict], str],
               defense_label: Callable[[dict], str]) -> list[Row]:
    """Results grouped into rows (seeds together), sorted by dataset, model, attack, poison, defense."""
    rows: dict[tuple, Row] = {}
    for result in results:
        key = (result["dataset"], result["model"], attack_label(result), _rate(result), defense_label(result))
        rows.setdefault(key, Row(*key)).results.append(result)
    return [rows[key] for key in sorted(rows)]


def row_table(rows: list[Row], figure_dir: Path | None) -> str:
    columns = METRIC_COLUMNS + [(key, title) for key, title in OPTIONAL_COLUMNS
                                if any(key in r for row in rows for r in row.results)]
    headers = ["model", "attack", "poison", "defense", "n"] + [title for _, title in columns]
    table = []
    for row in rows:
        line = [row.model, row.attack, poison_text(row.poison_rate), row.defense, str(len(row.results))]
        line += [spread_text(row.values(key)) for key, _ in columns]
        if figure_dir is not None:
            line.append(figure_links(row.results, figure_dir))
        table.append(line)
    if figure_dir is not None:
        headers.append("figure")
    return markdown_table(table, headers)


def poison_detection_table(results: list[dict], attack_label: Callable[[dict], str],
                           defense_label: Callable[[dict], str]) -> str:
    table = []
    for r in sorted((r for r in results if "poison_detection_auroc" in r),
                    key=lambda r: (r["dataset"], r["model"], attack_label(r), _rate(r), defense_label(r), r["seed"])):
        table.append([r["dataset"], r["model"], attack_label(r), poison_text(_rate(r)), defense_label(r), str(r["seed"]),
                      r.get("poison_detection_level", MISSING), percent(r.get("poison_detection_auroc")),
                      percent(r.get("poison_detection_precision")), percent(r.get("poison_detection_recall")),
                      f"{r.get('flagged_samples')} / {r.get('poisoned_samples')} / {r.get('samples')}",
                      seconds(r.get("defense_seconds")), seconds(r.get("train_seconds"))])
    return markdown_table(table, ["dataset", "model", "attack", "poison", "defense", "seed", "samples", "AUROC",
                                  "precision", "recall", "flagged / poisoned / all", "defense s", "train s"])


def figure_links(results: list[dict], figure_dir: Path) -> str:
    links = [f"[seed {r['seed']}](figures/{r['cell']}.png)" for r in results
             if (figure_dir / f"{r['cell']}.png").is_file()]
    return " ".join(links) or MISSING


COSTS_TEXT = ("Mean wall seconds: training per attacked model; per defense cell, fitting the defense and "
              "evaluating the defended predictor on the clean and the triggered test set (`none` reuses the "
              "undefended evaluation).")
TRAINING_COST_HEADERS = ["model", "mean train s", "trained models"]
DEFENSE_COST_HEADERS = ["defense", "mean fit s", "mean defended evaluation s", "cells"]


def cost_rows(results: list[dict], defense_label: Callable[[dict], str]) -> tuple[list[list[str]], list[list[str]]]:
    """The rows of the two cost tables (training per model; fitting and evaluation per defense),
    shared by the Markdown and the page."""
    training = [[name, seconds(mean(r.get("train_seconds") for r in group)), str(len(group))]
                for name, group in grouped(trained_models(results), lambda r: r["model"]).items()]
    defenses = [[name, seconds(mean(r.get("defense_seconds") for r in group)),
                 seconds(mean(r.get("eval_seconds") for r in group)), str(len(group))]
                for name, group in grouped(results, defense_label).items()]
    return training, defenses


def cost_tables(results: list[dict], defense_label: Callable[[dict], str]) -> str:
    training, defenses = cost_rows(results, defense_label)
    return "\n\n".join([markdown_table(training, TRAINING_COST_HEADERS), markdown_table(defenses, DEFENSE_COST_HEADERS)])


def configuration(results: list[dict]) -> str:
    """The settings the results were produced with; several values are listed when they differ."""
    budget = distinct(f"{r['clean_budget_images']} images ({100 * r['clean_budget_images'] / r['train_images']:.1f}% "
                      "of the training split)" for r in results if r.get("clean_budget_images") and r.get("train_images"))
    versions = package_versions(results)
    hardware = distinct(f"{r['hardware']} ({r.get('device', '?')})" for r in results if r.get("hardware"))
    lines = [
        f"- image size: {distinct(r.get('image_size') for r in results)} px",
        f"- training / test images: {distinct(r.get('train_images') for r in results)} / "
        f"{distinct(r.get('test_images') for r in results)}",
        f"- epochs: {distinct(r.get('epochs') for r in results)}; "
        f"batch size: {distinct(r.get('batch_size') for r in results)}",
        f"- defender's clean budget: {budget}",
        f"- packages: {versions}",
        f"- hardware: {hardware}",
        f"- precision: {distinct(precision_name(r.get('device', 'cpu')) for r in results)}",
    ]
    return "\n".join(lines)


def matrix_table(matrix: matrices.Matrix) -> str:
    table = [[row] + [matrix.text(row, column) for column in matrix.columns] for row in matrix.rows]
    return markdown_table(table, ["attack \\ defense"] + matrix.columns)


def markdown_table(rows: list[list[str]], headers: list[str]) -> str:
    # numparse off: cells are already formatted text ("92.0" must not become "92")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# --- small helpers ----------------------------------------------------------------------------

def grouped(results: Iterable[dict], label: Callable[[dict], str]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        groups[label(result)].append(result)
    return {name: groups[name] for name in sorted(groups)}


def trained_models(results: list[dict]) -> list[dict]:
    """One result per attacked model (``artifact`` key): its pre-defense numbers are shared by
    every defense cell, so counting each once keeps means from weighting by the defense count."""
    seen: dict[str, dict] = {}
    for result in results:
        seen.setdefault(result.get("artifact") or result["cell"], result)
    return list(seen.values())


def mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def poison_text(rate: float) -> str:
    return MISSING if rate < 0 else f"{100 * rate:g}%"


def distinct(values: Iterable[Any]) -> str:
    present = {v for v in values if v is not None}
    return ", ".join(str(v) for v in sorted(present)) if present else MISSING


def _rate(result: dict) -> float:
    rate = result.get("poison_rate")
    return -1.0 if rate is None else float(rate)


def _params(result: dict, key: str, legacy: dict[str, dict]) -> dict:
    # the poison rate has its own column, so it never makes an attack variant
    params = {k: v for k, v in (result.get(key) or {}).items() if k != "poison_rate"}
    return {**legacy.get(result[key.removesuffix("_params")], {}), **params}


def legacy_values(results: list[dict], name_key: str, params_key: str) -> dict[str, dict]:
    """Per plugin name, the legacy values of parameters added after results were stored
    (``Plugin.added``), as newer records carry them (``attack_legacy_params``): a result written
    before a parameter existed ran with its legacy value, so it labels the same as a newer
    result that holds that value explicitly."""
    legacy: dict[str, dict] = defaultdict(dict)
    for result in results:
        legacy[result[name_key]].update(result.get(params_key.replace("_params", "_legacy_params")) or {})
    return legacy


def _param_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
