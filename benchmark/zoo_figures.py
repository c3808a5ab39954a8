"""The attack zoo's measured figures and tables, from result JSON files (README "Attack zoo").

``python -m benchmark.zoo_figures --table DIR --sweep DIR --output docs/figures`` reads the
result folders of the per-attack grid (``--table``) and of the poison-rate and band grids
(``--sweep``) and writes

- ``zoo_asr_vs_poison_rate.png``: ASR (mean over seeds, bar = min..max) against poison rate,
  one line per attack variant that was run at two or more rates, with its baseline ASR dashed;
- ``zoo_asr_vs_band.png``: ASR against the NNI distance band [near, far] of ``iba_nni`` and
  ``iba_prl`` at ``--band-rate``;

and prints the Markdown tables of the same numbers (the per-attack table: one row per cell of
``--table`` without a defense).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmark.store import atomic_write_bytes  # noqa: E402

BAND_ATTACKS = ("iba_nni", "iba_prl")


def load(folders: list[str]) -> list[dict]:
    """Every result record in ``folders``."""
    return [json.loads(path.read_text()) for folder in folders for path in sorted(Path(folder).glob("*.json"))]


def variant(result: dict) -> str:
    """An attack and its parameters other than the poison rate, e.g. ``iba_nni near=3 far=8``."""
    params = result["attack_params"]
    shown = {k: params[k] for k in ("near", "far") if k in params}
    return " ".join([result["attack"], *(f"{k}={v:g}" for k, v in shown.items())])


def spread(values: list[float]) -> str:
    """``mean ± sample std`` in percent (just the mean for one value)."""
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) < 2 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def by_rate(results: list[dict]) -> dict[str, dict[float, list[dict]]]:
    groups: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        groups[variant(r)][r["poison_rate"]].append(r)
    return {name: rates for name, rates in groups.items() if len(rates) >= 2}


def rate_figure(groups: dict[str, dict[float, list[dict]]], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(7, 4.2))
    for number, (name, rates) in enumerate(sorted(groups.items())):
        colour = f"C{number}"
        xs = sorted(rates)
        asr = [[r["asr"] for r in rates[x]] for x in xs]
        means = [100 * statistics.fmean(v) for v in asr]
        low = [m - 100 * min(v) for m, v in zip(means, asr)]
        high = [100 * max(v) - m for m, v in zip(means, asr)]
        ax.errorbar([100 * x for x in xs], means, yerr=[low, high], color=colour, marker="o", markersize=3,
                    capsize=3, label=f"{name} (n={len(asr[0])})")
        baseline = [100 * statistics.fmean(r["baseline_asr"] for r in rates[x]) for x in xs]
        ax.plot([100 * x for x in xs], baseline, color=colour, linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xticks([100 * x for x in sorted({x for rates in groups.values() for x in rates})])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("poison rate (%)")
    ax.set_ylabel("ASR (%)")
    ax.set_title("ASR against poison rate: mean over seeds, bars min..max; dashed: baseline ASR", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(figure, path)


def band_results(results: list[dict], rate: float) -> dict[str, dict[tuple[float, float], list[dict]]]:
    """``iba_nni`` / ``iba_prl`` results at ``rate`` by band, keeping the seeds every band has
    (so bands are compared on the same seeds)."""
    chosen = [r for r in results if r["attack"] in BAND_ATTACKS and r["poison_rate"] == rate]
    bands = {(r["attack_params"]["near"], r["attack_params"]["far"]) for r in chosen}
    common = set.intersection(*({r["seed"] for r in chosen if (r["attack_params"]["near"], r["attack_params"]["far"]) == b}
                                for b in bands)) if bands else set()
    groups: dict[str, dict[tuple[float, float], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in chosen:
        if r["seed"] in common:
            groups[r["attack"]][(r["attack_params"]["near"], r["attack_params"]["far"])].append(r)
    return groups


def band_figure(groups: dict[str, dict[tuple[float, float], list[dict]]], path: Path) -> None:
    figure, ax = plt.subplots(figsize=(6, 3.8))
    for number, (name, bands) in enumerate(sorted(groups.items())):
        xs = sorted(bands)
        ax.plot([f"[{a:g}, {b:g}]" for a, b in xs], [100 * statistics.fmean(r["asr"] for r in bands[x]) for x in xs],
                color=f"C{number}", marker="o", label=name)
        ax.plot([f"[{a:g}, {b:g}]" for a, b in xs],
                [100 * statistics.fmean(r["baseline_asr"] for r in bands[x]) for x in xs],
                color=f"C{number}", linestyle="--", linewidth=0.8)
    ax.set_xlabel("NNI band [near, far] (pixels from the victim)")
    ax.set_ylabel("ASR (%)")
    ax.set_title("ASR against the trigger's distance from the victim; dashed: baseline ASR", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(figure, path)


def save(figure: plt.Figure, path: Path) -> None:
    from io import BytesIO

    buffer = BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def tables(table: list[dict], results: list[dict], band_rate: float) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    lines = ["| attack | clean mIoU | ASR | baseline ASR | PBA | collateral ASR |", "|---|---|---|---|---|---|"]
    for r in sorted(table, key=lambda r: r["attack"]):
        lines.append(f"| {r['attack']} | {pct(r['clean_miou'])} | {pct(r['asr'])} | {pct(r['baseline_asr'])} | "
                     f"{pct(r['pba'])} | {pct(r.get('collateral_asr'))} |")
    groups = by_rate(results)
    rates = sorted({x for g in groups.values() for x in g})
    lines += ["", "| attack | " + " | ".join(f"{100 * x:g}%" for x in rates) + " | baseline |",
              "|---|" + "---|" * (len(rates) + 1)]
    for name, by in sorted(groups.items()):
        baseline = [r["baseline_asr"] for x in by for r in by[x]]
        lines.append(f"| {name} | " + " | ".join(spread([r["asr"] for r in by.get(x, [])]) if x in by else "–"
                                                for x in rates) + f" | {spread(baseline)} |")
    bands = band_results(results, band_rate)
    lines += ["", "| attack | band [near, far] | ASR | baseline ASR |", "|---|---|---|---|"]
    for name, by in sorted(bands.items()):
        for (near, far), cells in sorted(by.items()):
            lines.append(f"| {name} | [{near:g}, {far:g}] | {spread([r['asr'] for r in cells])} | "
                         f"{spread([r['baseline_asr'] for r in cells])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, metavar="DIR", help="results of the per-attack grid")
    parser.add_argument("--sweep", required=True, metavar="DIR", help="results of the poison-rate and band grids")
    parser.add_argument("--output", default="docs/figures", help="where the PNG figures go")
    parser.add_argument("--band-rate", type=float, default=0.05, help="poison rate of the band comparison")
    args = parser.parse_args()
    table, results = ([r for r in load([folder]) if r["defense"] == "none" and r.get("asr") is not None]
                      for folder in (args.table, args.sweep))
    rate_figure(by_rate(results), Path(args.output) / "zoo_asr_vs_poison_rate.png")
    band_figure(band_results(results, args.band_rate), Path(args.output) / "zoo_asr_vs_band.png")
    print(tables(table, results, args.band_rate))


if __name__ == "__main__":
    main()
