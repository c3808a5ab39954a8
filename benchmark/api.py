"""The Python API: a spec in, a result record out; a grid of specs; a results folder as rows.

Everything the command line does goes through these few names, so a script or a notebook
gets the same cached, resumable, reproducible cells as ``python -m benchmark run``::

    from benchmark.api import DatasetConfig, RunSpec, TrainConfig, run

    result = run(RunSpec(attack="image_level", defense="median", dataset=DatasetConfig(train_size=200)))
    print(result["asr"], result["post_asr"])

``docs/api.md`` documents each name; ``tests/test_docs.py`` runs its example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.executor import run_local
from benchmark.grid import Grid, build_grid
from benchmark.runner import run
from benchmark.spec import RunSpec
from leaderboard.render import load_results

__all__ = ["DatasetConfig", "Grid", "RunSpec", "TrainConfig", "build_grid", "load_results", "rows", "run",
           "run_grid"]


def run_grid(grid: Grid | dict[str, Any]) -> list[dict]:
    """Run every cell of ``grid`` (a :class:`Grid`, or the settings a TOML config holds, such as
    ``{"attack": "image_level,fine_grained", "defense": "none,median", "seed": [0, 1]}``) in
    this process and return their result records, in the grid's order."""
    cells = (grid if isinstance(grid, Grid) else build_grid(dict(grid))).cells()
    return [result for _, result in run_local(cells)]


def rows(results: Iterable[dict] | str | Path, columns: Sequence[str]) -> list[list[Any]]:
    """``columns`` of each result record (None where a record lacks one): a table without
    pandas. ``results`` is a list of records or a results folder."""
    records = load_results(results) if isinstance(results, (str, Path)) else results
    return [[record.get(column) for column in columns] for record in records]
