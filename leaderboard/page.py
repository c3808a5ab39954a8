"""The leaderboard as one static HTML page: no server, no network, opens from disk.

The page holds the same views as the Markdown (the findings of the paired test; the attack x
defense matrices of each model, coloured like the heatmaps; each model's rankings with the
test's verdicts, pairwise separations and a link to its critical-difference diagram; the full
table) with inline CSS and JavaScript:
clicking a column header sorts its table (numbers numerically, by a cell's leading number when
it has more text, missing values last; again to reverse), and the dataset / model / attack / defense filters hide the rows, matrix rows,
matrix columns and model blocks that do not match. Like the Markdown it is rendered from the
result files only, so the same files give the same bytes.
"""

from __future__ import annotations

import html
from pathlib import Path

from matplotlib import colormaps
from matplotlib.colors import to_hex

from leaderboard import matrices
from leaderboard.agreement import AGREEMENT_HEADERS, agreement_rows
from leaderboard.findings import IMPROVEMENT_HEADERS, RANKING_TEXT, findings, improvement_rows, pairwise_rows
from leaderboard.render import (COSTS_TEXT, DEFENSE_COST_HEADERS, GPU_SECTION, METRIC_COLUMNS, TRAINING_COST_HEADERS,
                                cost_rows, group_rows, hardware_header, load_results, poison_text, variant_labeller,
                                versions_note)
from leaderboard.stats import MISSING, spread

FILTER_KEYS = ("dataset", "model", "attack", "defense")

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 90em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.55em; text-align: right; white-space: nowrap; }
th:first-child, td.name { text-align: left; }
thead th { background: #f3f3f3; }
table.sortable thead th { cursor: pointer; user-select: none; }
table.sortable thead th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable thead th[aria-sort="descending"]::after { content: " \\25BC"; }
#filters { position: sticky; top: 0; background: #fff; padding: 0.5em 0; border-bottom: 1px solid #ddd; }
#filters label { margin-right: 1em; }
.muted { color: #666; }
[hidden] { display: none !important; }
"""

SCRIPT = """
"use strict";
function sortValue(cell) {
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  if (raw === "" || raw === "\\u2013") return null;
  const number = Number(raw);
  if (!Number.isNaN(number)) return number;
  // "40.2 [33.6, 46.6]", "12 of 42", "85.0 (80.0–90.0)": sort by the leading number
  return /^-?[0-9]/.test(raw) ? parseFloat(raw) : raw.toLowerCase();
}
function compare(a, b) {
  if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
document.querySelectorAll("table.sortable").forEach((table) => {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((header, column) => {
    header.addEventListener("click", () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach((h) => h.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = sortValue(a.cells[column]), y = sortValue(b.cells[column]);
        if (x === null || y === null) return (x === null) - (y === null);
        return ascending ? compare(x, y) : -compare(x, y);
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
});
const filters = Array.from(document.querySelectorAll("select.filter"));
const resultRows = Array.from(document.querySelectorAll("#results tbody tr"));
function applyFilters() {
  const wanted = Object.fromEntries(filters.map((f) => [f.dataset.key, f.value]));
  const matches = (element, keys) => keys.every(
    (key) => !wanted[key] || element.dataset[key] === undefined || element.dataset[key] === wanted[key]);
  let shown = 0;
  resultRows.forEach((row) => { row.hidden = !matches(row, ["dataset", "model", "attack", "defense"]); shown += !row.hidden; });
  document.querySelectorAll("section.view, section.ranking").forEach((view) => { view.hidden = !matches(view, ["dataset", "model"]); });
  document.querySelectorAll("table.matrix tbody tr").forEach((row) => { row.hidden = !matches(row, ["attack"]); });
  document.querySelectorAll("table.matrix [data-defense]").forEach((cell) => { cell.hidden = !matches(cell, ["defense"]); });
  document.getElementById("shown").textContent = shown + " of " + resultRows.length + " rows shown";
}
filters.forEach((f) => f.addEventListener("change", applyFilters));
applyFilters();
"""


def render_html(results_dir: str | Path, gpu_results: str | Path | None = None) -> str:
    """The self-contained leaderboard page of every result in ``results_dir`` (and, like the
    Markdown, a section for ``gpu_results``)."""
    results = load_results(results_dir)
    figure_dir = Path(results_dir).parent / "figures"
    attack_label = variant_labeller(results, "attack", "attack_params")
    defense_label = variant_labeller(results, "defense", "defense_params")
    rows = group_rows(results, attack_label, defense_label)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Leaderboard: backdoor attacks and defenses on semantic segmentation</title>",
        f"<style>{STYLE}</style>", "</head>", "<body>",
        "<h1>Leaderboard: backdoor attacks and defenses on semantic segmentation</h1>",
        f'<p class="muted">Rendered by <code>python -m benchmark leaderboard --format html</code> from '
        f"{len(results)} result file(s). Numbers are percentages; <code>a (b–c)</code> is the mean over "
        "a cell's seeds and their range, min to max (n seeds: the full table's column, each matrix's note); "
        "differences between defenses are claimed only where the paired test of the rankings supports "
        "them. Click a column header to sort; the filters apply to every table.</p>",
        filters_html(results, attack_label, defense_label),
    ]
    views = matrices.views(results, attack_label, defense_label)
    parts += ["<h2>Findings</h2>",
              '<p class="muted">What the paired test of each model\'s defenses supports; a difference not '
              "named here is not resolved by these seeds.</p>",
              "<ul>" + "".join(f"<li>{_e(' '.join(findings(view)))}</li>" for view in views) + "</ul>",
              "<h2>Attack x defense matrices</h2>"]
    parts += views_html(views)
    parts += ["<h2>Rankings</h2>", f'<p class="muted">{_e(RANKING_TEXT.replace("`", ""))}</p>']
    for view in views:
        parts += [f'<section class="ranking" data-dataset="{_e(view.dataset)}" data-model="{_e(view.model)}">',
                  f"<h3>Defenses: {_e(view.title)}</h3>",
                  f"<p>{_e(' '.join(findings(view)))}</p>",
                  table_html(matrices.DEFENSE_RANKING_HEADERS,
                             matrices.defense_ranking(view, attack_label, defense_label),
                             f"defenses-{view.slug}"),
                  *ranking_extras_html(view, figure_dir),
                  f"<h3>Attacks: {_e(view.title)}</h3>",
                  table_html(matrices.ATTACK_RANKING_HEADERS,
                             matrices.attack_ranking(view.results, attack_label, defense_label),
                             f"attacks-{view.slug}"),
                  "</section>"]
    if (figure_dir / "asr_vs_poison_rate.png").is_file():  # linked, not inlined: the page stays small
        parts.append('<p><a href="figures/asr_vs_poison_rate.png">ASR against poison rate (figure)</a></p>')
    parts += [
        "<h2>Full table</h2>", '<p id="shown" class="muted"></p>', results_table_html(rows, figure_dir),
    ]
    training_costs, defense_costs = cost_rows(results, defense_label)
    parts += ["<h2>Costs</h2>", f'<p class="muted">{_e(COSTS_TEXT.replace("`", ""))}</p>',
              table_html(TRAINING_COST_HEADERS, training_costs, "training-costs", name_column=0),
              table_html(DEFENSE_COST_HEADERS, defense_costs, "defense-costs", name_column=0)]
    if gpu_results is not None:
        parts += gpu_section_html(results, load_results(gpu_results))
    parts += [f"<script>{SCRIPT}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def ranking_extras_html(view: matrices.View, figure_dir: Path) -> list[str]:
    """The critical-difference diagram (linked: the page stays small), the pairwise verdicts
    (each symbol's title holds its Holm-adjusted p) and the probabilities of improvement."""
    analysis, parts = view.analysis, []
    if (figure_dir / view.cd_name).is_file():
        parts.append(f'<p><a href="figures/{_e(view.cd_name)}">critical-difference diagram (figure)</a></p>')
    if analysis.rejects and analysis.separated_pairs:
        headers, rows = pairwise_rows(analysis)
        names = [row[1] for row in rows]
        lines = ['<table class="pairwise">', "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers)
                 + "</tr></thead>", "<tbody>"]
        for row in rows:
            cells = [f"<td>{_e(row[0])}</td>", f'<td class="name">{_e(row[1])}</td>']
            for other, symbol in zip(names, row[2:]):
                p = analysis.pvalues.get((row[1], other))
                title = "" if p is None else f' title="{_e(row[1])} vs {_e(other)}: Holm p = {p:.2g}"'
                cells.append(f"<td{title}>{_e(symbol)}</td>")
            lines.append(f"<tr>{''.join(cells)}</tr>")
        lines += ["</tbody>", "</table>"]
        parts += ['<p class="muted">Pairwise (Wilcoxon-Holm): ▲ the row\'s defense is separated as better than '
                  "the column's, ▼ as worse, · not separated; columns are the rows' numbers; hover for p.</p>",
                  "\n".join(lines)]
    if analysis.improvement:
        parts += ['<p class="muted">Probability of improvement of the top tested defenses (a random seed of a '
                  "random attack; ties half):</p>",
                  table_html(IMPROVEMENT_HEADERS, improvement_rows(analysis), f"improvement-{view.slug}", name_column=0)]
    return parts


def views_html(views: list[matrices.View], prefix: str = "") -> list[str]:
    """Each view as a section the model / dataset filters can hide, its matrices as tables."""
    parts = []
    for view in views:
        parts.append(f'<section class="view" data-dataset="{_e(view.dataset)}" data-model="{_e(view.model)}">')
        parts.append(f"<h3>{_e(prefix + view.title)}</h3>")
        for matrix in view.matrices:
            parts += [f"<h4>{_e(matrix.title)} <span class=\"muted\">({_e(matrix.seeds_note())})</span></h4>",
                      matrix_html(matrix)]
        parts.append("</section>")
    return parts


def gpu_section_html(cpu: list[dict], gpu: list[dict]) -> list[str]:
    attack_label = variant_labeller(gpu, "attack", "attack_params")
    defense_label = variant_labeller(gpu, "defense", "defense_params")
    return [f"<h2>GPU: {_e(hardware_header(gpu))}</h2>",
            f'<p class="muted">{_e(GPU_SECTION)} {len(gpu)} result file(s). {_e(versions_note(cpu, gpu))}</p>',
            "<h3>Agreement with the CPU results</h3>",
            table_html(AGREEMENT_HEADERS, agreement_rows(cpu, gpu), "agreement", name_column=0),
            *views_html(matrices.views(gpu, attack_label, defense_label), prefix="GPU: ")]


def filters_html(results: list[dict], attack_label, defense_label) -> str:
    values = {
        "dataset": sorted({r["dataset"] for r in results}),
        "model": sorted({r["model"] for r in results}),
        "attack": sorted({attack_label(r) for r in results}),
        "defense": sorted({defense_label(r) for r in results}),
    }
    selects = []
    for key in FILTER_KEYS:
        options = ['<option value="">all</option>'] + [f'<option value="{_e(v)}">{_e(v)}</option>' for v in values[key]]
        selects.append(f'<label>{key} <select class="filter" id="filter-{key}" data-key="{key}">'
                       f'{"".join(options)}</select></label>')
    return f'<div id="filters">{"".join(selects)}</div>'


def matrix_html(matrix: matrices.Matrix) -> str:
    """A matrix as a table whose cells are coloured on the heatmap's scale."""
    cmap = colormaps[matrices.COLOUR_MAPS.get(matrix.metric, "viridis")]
    low, high = matrices.COLOUR_RANGES.get(matrix.metric, (0.0, 1.0))
    head = "".join(f'<th data-defense="{_e(c)}">{_e(c)}</th>' for c in matrix.columns)
    lines = [f'<table class="matrix" data-metric="{_e(matrix.metric)}">',
             f"<thead><tr><th>attack \\ defense</th>{head}</tr></thead>", "<tbody>"]
    for row in matrix.rows:
        cells = []
        for column in matrix.columns:
            found = matrix.spread(row, column)
            if found is None:
                cells.append(f'<td data-defense="{_e(column)}">{MISSING}</td>')
                continue
            rgba = cmap(min(max((found.mean - low) / (high - low), 0.0), 1.0))
            ink = "#fff" if sum(rgba[:3]) < 1.5 else "#000"
            cells.append(f'<td data-defense="{_e(column)}" style="background:{to_hex(rgba)};color:{ink}">'
                         f"{_e(found.text())}</td>")
        lines.append(f'<tr data-attack="{_e(row)}"><td class="name">{_e(row)}</td>{"".join(cells)}</tr>')
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def table_html(headers: list[str], rows: list[list[str]], table_id: str, name_column: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(v, i == name_column) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table>")


def results_table_html(rows: list, figure_dir: Path) -> str:
    """The full table: one row per (dataset, model, attack, poison, defense), sortable, filterable."""
    headers = ["dataset", "model", "attack", "poison", "defense", "n"] + [t for _, t in METRIC_COLUMNS] + ["figure"]
    lines = ['<table class="sortable" id="results">',
             "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>", "<tbody>"]
    for row in rows:
        data = " ".join(f'data-{k}="{_e(v)}"' for k, v in
                        (("dataset", row.dataset), ("model", row.model), ("attack", row.attack), ("defense", row.defense)))
        cells = [_cell(row.dataset, True), _cell(row.model, True), _cell(row.attack, True),
                 f'<td data-sort="{row.poison_rate}">{_e(poison_text(row.poison_rate))}</td>',
                 _cell(row.defense, True), f"<td>{len(row.results)}</td>"]
        for key, _ in METRIC_COLUMNS:
            found = spread(row.values(key))
            cells.append(f"<td>{MISSING}</td>" if found is None else
                         f'<td data-sort="{found.mean:.6f}">{_e(found.text())}</td>')
        links = [f'<a href="figures/{_e(r["cell"])}.png">seed {r["seed"]}</a>' for r in row.results
                 if (figure_dir / f"{r['cell']}.png").is_file()]
        cells.append(f'<td class="name">{" ".join(links) or MISSING}</td>')
        lines.append(f"<tr {data}>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _cell(value: str, name: bool = False) -> str:
    return f'<td class="name">{_e(value)}</td>' if name else f"<td>{_e(value)}</td>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
