"""The Ray executor: a grid's trainings and cells as Ray tasks; the driver alone writes the store.

The driver plans the grid from the store: a finished cell is read back, a model in the store
is handed to its cells as bytes, and every other model becomes one training task
(:func:`benchmark.tasks.train_model_task`), shared by all the cells that need it. Each
unfinished cell becomes a cell task (:func:`benchmark.tasks.cell_task`) whose arguments are its
two models (the attacked one and the clean baseline), so Ray starts it once both exist. Tasks
return store files as bytes and the driver writes them atomically as they arrive, so worker
machines need no shared file system; a driver killed at any moment resumes from the store by
running the same command again. A worker that dies mid-task is retried by Ray
(``MAX_RETRIES``). Tasks ask for ``--gpus-per-task`` GPUs (a fraction shares one) when the
cells run on CUDA, and for ``--cpus-per-task`` CPUs, which are also their PyTorch threads: CPU
arithmetic depends on the thread count, so on the CPU the default is the driver's own thread
count, which makes the numbers those of the local executor on the driver's machine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import torch
from tqdm import tqdm

from benchmark import artifacts, runner, tasks
from benchmark.errors import BenchmarkError
from benchmark.spec import RunSpec, results_folder
from benchmark.store import artifact_damage, atomic_write_bytes, read_json

log = logging.getLogger(__name__)

MAX_RETRIES = 3
"""How often Ray reruns a task whose worker process or machine died."""

LOCAL_WORKER_NICENESS = "0"
"""Workers of a cluster this process starts run at normal priority. Ray nices them to 15 by
default, which on a busy machine starves the benchmark's own work behind any other process (a
two-cell grid took 280 s instead of 20 s beside a second job on two cores); an existing
``RAY_worker_niceness`` is kept."""


@dataclass
class RayExecutor:
    address: str | None = None
    """A running cluster's address (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); None starts a local one."""
    gpus_per_task: float = 1.0
    """GPUs each task asks for on CUDA; a fraction lets several tasks share one GPU."""
    cpus_per_task: int | None = None
    """CPUs (and PyTorch threads) of each task; default: the driver's thread count on the CPU, 1 on CUDA."""
    plugins: list[str] = field(default_factory=list)
    """``--plugin`` modules or files every worker imports first."""

    def __post_init__(self) -> None:
        if not (0 < self.gpus_per_task <= 1 or self.gpus_per_task == int(self.gpus_per_task) > 0):
            raise BenchmarkError(f"--gpus-per-task must be a fraction in (0, 1] or a whole number, got {self.gpus_per_task}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise BenchmarkError(f"--cpus-per-task must be >= 1, got {self.cpus_per_task}")
        self.plugins = [str(Path(p).resolve()) if Path(p).is_file() else p for p in self.plugins]

    def __call__(self, cells: list[RunSpec]) -> Iterator[tuple[RunSpec, dict]]:
        """The result of every cell, in the order of ``cells``."""
        ray = import_ray()
        started = connect(ray, self.address)
        try:
            yield from self.run(ray, cells)
        finally:
            if started:
                ray.shutdown()

    def run(self, ray: ModuleType, cells: list[RunSpec]) -> Iterator[tuple[RunSpec, dict]]:
        resources = task_resources(ray, cells[0], self.gpus_per_task, self.cpus_per_task)
        options = {"max_retries": MAX_RETRIES, **resources}
        threads = int(resources["num_cpus"])
        train = ray.remote(tasks.train_model_task).options(**options)
        compute = ray.remote(tasks.cell_task).options(**options)
        cells = [portable(spec) for spec in cells]
        models: dict[Path, Any] = {}  # model path -> reference to its files, stored or being trained
        pending: dict[Any, tuple[str, RunSpec, Any]] = {}  # task -> (kind, spec, cell index or model path)
        results: dict[int, dict] = {}

        def model_files(spec: RunSpec, attack: Any) -> Any:
            path = artifacts.model_path(spec, attack)
            if path not in models:
                stored = intact_model(path, Path(spec.workdir))
                if stored is not None:
                    artifacts.counters.reused += 1
                    models[path] = ray.put(stored)
                else:
                    models[path] = train.remote(spec, attack is not None, self.plugins, threads)
                    pending[models[path]] = ("model", spec, path)
            return models[path]

        for index, spec in enumerate(cells):
            _, attack, _, key = runner.prepare(spec)
            finished = runner.finished_result(spec, key)
            if finished is not None:
                results[index] = finished
                continue
            evaluations = stored_files(Path(spec.workdir), [artifacts.evaluation_path(spec, trained_with, attack)
                                                            for trained_with in (None, attack)])
            task = compute.remote(spec, self.plugins, threads, model_files(spec, None), model_files(spec, attack),
                                  evaluations)
            pending[task] = ("cell", spec, index)
        log.info("ray: %d cell(s) finished, %d to compute, %d model(s) to train", len(results),
                 sum(kind == "cell" for kind, _, _ in pending.values()),
                 sum(kind == "model" for kind, _, _ in pending.values()))

        following = 0
        try:
            with tqdm(total=len(cells), initial=len(results), desc="cells", unit="cell",
                      disable=None if len(cells) > 1 else True) as bar:
                while True:
                    while following in results:
                        yield cells[following], results[following]
                        following += 1
                    if not pending:
                        break
                    [task], _ = ray.wait(list(pending), num_returns=1)
                    kind, spec, where = pending.pop(task)
                    files = task_output(ray, task)
                    if kind == "model":
                        write_files(spec, files, overwrite=True)
                        artifacts.counters.trained += 1
                        log.info("ray: trained %s", where.name)
                    else:
                        write_files(spec, files, overwrite=False)
                        results[where] = json.loads(next(v for k, v in files.items() if k.startswith("results/")))
                        bar.update()
        finally:  # a failed task or an interrupted driver leaves no work running on the cluster
            for task in pending:
                ray.cancel(task, force=True)


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise BenchmarkError("--executor ray needs Ray, which is not installed: "
                             "pip install 'seg-backdoor-bench[ray]' (or pip install ray)") from None
    return ray


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join the cluster at ``address`` or start a local one; True if this call connected
    (False: this process was already connected, e.g. by a library user)."""
    if address is not None:
        check_reachable(address)
    if ray.is_initialized():
        return False
    try:
        if address is None:
            os.environ.setdefault("RAY_worker_niceness", LOCAL_WORKER_NICENESS)
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at {address!r}" if address else "locally"
        raise BenchmarkError(f"cannot start or join a Ray cluster {where}: {error}") from None
    return True


def check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when ``HOST:PORT`` does not answer."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BenchmarkError(f"--ray-address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise BenchmarkError(f"cannot reach the Ray cluster at {address!r}: {error.strerror or error}") from None


def task_resources(ray: ModuleType, spec: RunSpec, gpus_per_task: float, cpus_per_task: int | None) -> dict[str, float]:
    """GPUs when the cells run on CUDA (``cuda``, or ``auto`` on a cluster with GPUs), and CPUs."""
    cuda = spec.device.startswith("cuda") or (spec.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)
    resources = {"num_cpus": cpus_per_task or 1, "num_gpus": gpus_per_task} if cuda else {
        "num_cpus": cpus_per_task or torch.get_num_threads()}
    largest = max((node["Resources"].get("CPU", 0) for node in ray.nodes() if node["Alive"]), default=0)
    if resources["num_cpus"] > largest:  # Ray would wait for a node that may never join
        log.warning("each task asks for %d CPUs but the largest node has %d; lower --cpus-per-task",
                    resources["num_cpus"], largest)
    return resources


def portable(spec: RunSpec) -> RunSpec:
    """``spec`` with its dataset cache at an absolute path, the same wherever a task runs."""
    cache_dir = spec.dataset.cache_dir or str(Path(spec.workdir) / "datasets")
    return dataclasses.replace(spec, dataset=dataclasses.replace(spec.dataset, cache_dir=str(Path(cache_dir).resolve())))


def intact_model(path: Path, workdir: Path) -> tasks.Files | None:
    """A stored model's files if complete and intact, else None (then it is trained again)."""
    sidecar_path = path.with_suffix(".json")
    sidecar = read_json(sidecar_path)
    if sidecar is None or not path.is_file():
        return None
    data = path.read_bytes()
    if artifact_damage(data, sidecar) is not None:
        log.warning("ignoring damaged artifact %s; it will be retrained", path)
        return None
    return {path.relative_to(workdir).as_posix(): data,
            sidecar_path.relative_to(workdir).as_posix(): sidecar_path.read_bytes()}


def stored_files(workdir: Path, paths: list[Path]) -> tasks.Files:
    return {p.relative_to(workdir).as_posix(): p.read_bytes() for p in paths if p.is_file()}


def task_output(ray: ModuleType, task: Any) -> tasks.Files:
    """A finished task's files; its error, if it failed, as the driver's own."""
    try:
        return ray.get(task)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, BenchmarkError):
            raise BenchmarkError(str(cause)) from None
        raise RuntimeError(f"a Ray task failed: {type(cause).__name__}: {cause}") from None


def write_files(spec: RunSpec, files: tasks.Files, overwrite: bool) -> None:
    """Write a task's files into the store atomically: weights before the sidecars that mark
    them complete, results last; ``overwrite`` False keeps files already there."""
    for name in sorted(files, key=lambda n: (n.startswith("results/"), n.endswith(".json"))):
        if name.startswith("results/"):
            path = results_folder(spec) / name.removeprefix("results/")
        else:
            path = Path(spec.workdir) / name
        if overwrite or not path.exists():
            atomic_write_bytes(path, files[name])
