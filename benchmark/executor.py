"""Executors: who computes a grid's cells. The runner hands them pure specs; nothing else knows.

``local`` (the default) runs the cells one after another in this process; under ``torchrun``
that is rank 0, and the other ranks join its trainings (:mod:`benchmark.distributed`). ``ray``
spreads trainings and cells over a Ray cluster (:mod:`benchmark.ray_executor`). Both give the
same results, stored the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from benchmark import distributed, runner
from benchmark.errors import BenchmarkError
from benchmark.progress import Progress
from benchmark.ray_executor import RayExecutor
from benchmark.spec import RunSpec

Executor = Callable[[list[RunSpec]], Iterator[tuple[RunSpec, dict]]]
"""Cells -> (cell, result record) for every cell, in order."""

EXECUTORS = ("local", "ray")


def make_executor(settings: dict[str, Any]) -> Executor:
    """The executor the settings name; its keys (``executor``, ``ray_address``,
    ``gpus_per_task``, ``cpus_per_task``) are taken out of ``settings``."""
    name = settings.pop("executor", "local")
    address = settings.pop("ray_address", None)
    gpus_per_task = settings.pop("gpus_per_task", None)
    cpus_per_task = settings.pop("cpus_per_task", None)
    if name == "local":
        if address is not None or gpus_per_task is not None or cpus_per_task is not None:
            raise BenchmarkError("--ray-address, --gpus-per-task and --cpus-per-task need --executor ray")
        return run_local
    if name == "ray":
        if distributed.launched():
            raise BenchmarkError("--executor ray cannot run under torchrun: torchrun trains one model on several GPUs, "
                                 "Ray spreads a grid's models over them")
        try:
            gpus = 1.0 if gpus_per_task is None else float(gpus_per_task)
            cpus = None if cpus_per_task is None else int(cpus_per_task)
        except (TypeError, ValueError):
            raise BenchmarkError(f"--gpus-per-task and --cpus-per-task expect numbers, got {gpus_per_task!r}, "
                                 f"{cpus_per_task!r}") from None
        return RayExecutor(address, gpus, cpus, list(settings.get("plugins", [])))
    raise BenchmarkError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")


def run_local(cells: list[RunSpec]) -> Iterator[tuple[RunSpec, dict]]:
    """One cell after another in this process (rank 0 under torchrun)."""
    with Progress(len(cells), "cells", "cell", disable=None if len(cells) > 1 else True) as bar:
        for spec in cells:
            yield spec, runner.run(spec)
            bar.update()
    distributed.finish()
