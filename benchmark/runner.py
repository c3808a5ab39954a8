"""``run(spec) -> result``: one cell, told top to bottom.

Check the spec, build the data and the attack, get (or train) the clean and the attacked
models, fit the defense, evaluate, build the record and store it. Each step lives in the
module that owns it: :mod:`benchmark.spec` (checks, paths), :mod:`benchmark.datasets`,
:mod:`benchmark.poisoning` (the attack, the poisoned set, the clean budget),
:mod:`benchmark.artifacts` (trained models and undefended evaluations, cached),
:mod:`benchmark.defending` (any kind of defense), :mod:`benchmark.evaluate`,
:mod:`benchmark.record` and :mod:`benchmark.store`. A finished cell is never recomputed.
"""

from __future__ import annotations

import logging
import time

import torch

from attacks import Attack
from benchmark import artifacts, datasets, defending, poisoning, record, spec as specs
from benchmark.datasets import SegmentationDataset
from benchmark.engine import resolve_device
from benchmark.evaluate import evaluate
from benchmark.spec import RunSpec
from benchmark.store import atomic_write_json, file_lock, read_json
from defenses import Defense

log = logging.getLogger(__name__)

__all__ = ["RunSpec", "run", "prepare"]


def run(spec: RunSpec) -> dict:
    """Run one cell and return its result record (from the results store if finished).

    The cell is locked while it runs: a second process on the same workdir waits, then reuses
    the result instead of computing it again.
    """
    device = resolve_device(spec.device)
    data, attack, defense, key = prepare(spec)
    label = f"{spec.model}/{attack.name}/{defense.name}/seed{spec.seed}"
    with file_lock(specs.lock_path(spec, key), f"cell {label}"):
        finished = finished_result(spec, key)
        if finished is not None:
            log.info("cell %s already finished; reusing its result", label)
            artifacts.counters.finished_cells += 1
            return finished
        result = compute_cell(spec, data, attack, defense, device, key)
        atomic_write_json(specs.result_path(spec, key), result)
        return result


def prepare(spec: RunSpec) -> tuple[SegmentationDataset, Attack, Defense, str]:
    """Check ``spec`` and build its cell's dataset, attack, defense and key: bad input fails
    here with one line, before any work."""
    specs.check(spec)
    data = datasets.load(spec.dataset, spec.workdir)
    specs.check_sizes(spec, data.image_size)
    attack = poisoning.make_attack(spec, data)
    defense = Defense.registry.get(spec.defense).create(spec.defense_params)
    return data, attack, defense, artifacts.cell_key(spec, attack, defense)


def finished_result(spec: RunSpec, key: str) -> dict | None:
    """The stored result of cell ``key``; a file that is not that cell's record is recomputed."""
    path = specs.result_path(spec, key)
    result = read_json(path)
    if result is not None and result.get("cell") != key:
        log.warning("ignoring %s: not the result of cell %s; it will be recomputed", path, key)
        return None
    return result


def compute_cell(spec: RunSpec, data: SegmentationDataset, attack: Attack, defense: Defense,
                 device: torch.device, key: str) -> dict:
    """Train (or reuse) the models, fit the defense and evaluate: the result record of a cell."""
    baseline = artifacts.evaluation(spec, data, None, attack, device)
    attacked_model, sidecar = artifacts.trained_model(spec, data, attack, device)
    before = artifacts.evaluation(spec, data, attack, attack, device, attacked_model)

    budget = poisoning.clean_budget(spec, data, attack, device)
    fitted = defending.fit(spec, data, attack, defense, attacked_model, budget, device)

    start = time.perf_counter()
    if fitted.predictor is None:  # the defense does not apply to this model
        after = None
    elif fitted.leaves(attacked_model):  # its evaluation is the undefended one
        after = before
    else:
        after = evaluate(fitted.predictor, data.test, attack, data.num_classes, device, spec.eval_batch_size,
                         desc=f"evaluate {defense.name}")
    outcome = record.Outcome(baseline, before, after, fitted, sidecar, len(budget), time.perf_counter() - start)
    return record.build(spec, data, attack, defense, outcome, device, key)
