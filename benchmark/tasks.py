"""Pure tasks for executors that run elsewhere: train one model, compute one cell.

A task is a function of its spec and of the store files it is handed (bytes by path relative
to the workdir, e.g. ``models/<key>.safetensors``). It runs the ordinary runner in a fresh
private workdir seeded with those files and returns the store files the runner wrote there
(a trained model and its sidecar; evaluations and ``results/<cell>.json``). It reads and writes
no shared store, so it can run on a machine without the driver's file system; the driver
writes what it returns. Only the decoded-dataset cache, which is not part of the store, is
kept at the spec's ``dataset.cache_dir`` so each machine decodes a dataset from disk once.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable

import torch

from benchmark import artifacts, datasets, poisoning, runner
from benchmark.engine import resolve_device
from benchmark.plugins import load_plugins
from benchmark.spec import RunSpec

Files = dict[str, bytes]
"""Store files by path relative to the workdir."""

STORE_SUFFIXES = (".safetensors", ".json")


def train_model_task(spec: RunSpec, attacked: bool, plugins: list[str], threads: int) -> Files:
    """Train the attacked model of ``spec`` (or, if not ``attacked``, its clean baseline):
    the model's safetensors file and sidecar."""
    def work(local: RunSpec) -> None:
        data = datasets.load(local.dataset, local.workdir)
        attack = poisoning.make_attack(local, data) if attacked else None
        artifacts.trained_model(local, data, attack, resolve_device(local.device))

    return in_private_workdir(spec, plugins, threads, {}, work)


def cell_task(spec: RunSpec, plugins: list[str], threads: int, *inputs: Files) -> Files:
    """Compute the cell of ``spec`` given its trained models (and any stored evaluations):
    its result record under ``results/`` and the evaluations it computed."""
    return in_private_workdir(spec, plugins, threads, {k: v for files in inputs for k, v in files.items()}, runner.run)


def in_private_workdir(spec: RunSpec, plugins: list[str], threads: int, inputs: Files,
                       work: Callable[[RunSpec], object]) -> Files:
    """Run ``work`` on ``spec`` with ``threads`` PyTorch threads (CPU numbers depend on them),
    in a temporary workdir holding ``inputs``; the store files it wrote, by relative path."""
    load_plugins(plugins)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="benchmark-task-") as folder:
        root = Path(folder)
        for name, data in inputs.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        work(dataclasses.replace(spec, workdir=folder, results_dir=None))
        written = [p for p in root.rglob("*") if p.is_file() and p.suffix in STORE_SUFFIXES
                   and not p.name.startswith(".")]
        return {name: p.read_bytes() for p in written if (name := p.relative_to(root).as_posix()) not in inputs}
