"""The Ray executor (issue 15): same results as the local executor, a killed worker is retried,
a killed driver resumes from the store, and a missing Ray or cluster is one line, exit 2.

One local Ray cluster serves the whole module; the CLI runs in this process join it, and the
killed driver (a real process) joins it by address."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark import artifacts, ray_executor
from benchmark.cli import main

ROOT = Path(__file__).parents[2]
TINY = ["--train-size", "32", "--test-size", "8", "--image-size", "32", "--epochs", "1", "--batch-size", "16",
        "--device", "cpu"]
GRID = [*TINY, "--attack", "fine_grained", "--defense", "none,pruning"]
TIMINGS = {"train_seconds", "train_images_per_second", "defense_seconds", "eval_seconds"}

KILLED_ONCE_UNET = '''
import os
import signal
from pathlib import Path

import models


@models.register("killed_once_unet", size_divisor=32)
def killed_once_unet(num_classes, in_channels):
    """The zoo U-Net; the first training step anywhere marks MARK and kills its own process."""
    model = models.build("unet", num_classes, in_channels)

    def probe(module, args):
        if module.training and not Path(MARK).exists():
            Path(MARK).touch()
            os.kill(os.getpid(), signal.SIGKILL)

    model.register_forward_pre_hook(probe)
    return model
'''


ONE_AT_A_TIME_UNET = '''
import os
import time
from pathlib import Path

import models


@models.register("one_at_a_time_unet", size_divisor=32)
def one_at_a_time_unet(num_classes, in_channels):
    """The zoo U-Net; the first training anywhere takes the ticket GATE + ".first" and runs, every
    other one waits until the file GATE exists (the test opens it), so that a driver killed
    after the first model was stored never has the second one."""
    model = models.build("unet", num_classes, in_channels)

    def gate(module, args):
        if not module.training or getattr(module, "passed", False):
            return
        try:
            os.close(os.open(GATE + ".first", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            while not Path(GATE).exists():
                time.sleep(0.05)
        module.passed = True

    model.register_forward_pre_hook(gate)
    return model
'''


@pytest.fixture(scope="module")
def cluster() -> str:
    """One small local Ray cluster for this module (shut down after it); its address."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_worker_niceness", ray_executor.LOCAL_WORKER_NICENESS)  # as the executor does
    # CPU tasks take as many CPUs as this process has threads: at least that many, or they never start
    ray.init(num_cpus=max(2, torch.get_num_threads()), object_store_memory=80 * 2**20, include_dashboard=False,
             log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory) -> tuple[list[dict], Path]:
    workdir = tmp_path_factory.mktemp("local")
    return run_json("run", *GRID, "--workdir", str(workdir)), workdir


def run_json(*args: str) -> list[dict]:
    """``main(args)`` with ``--json``, its results parsed from stdout (where Ray also prints
    its notices of dead workers, as ``(raylet) ...`` lines)."""
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        assert main(["-q", *args, "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def store(workdir: Path) -> list[str]:
    return sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.suffix in (".json", ".safetensors"))


def test_a_local_cluster_runs_its_workers_at_normal_priority(cluster, monkeypatch):
    """Ray's default niceness (15) starves the workers behind any other process on a busy
    machine; the executor's own local cluster runs them at 0."""
    ray = pytest.importorskip("ray")
    assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == 0
    seen = {}
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(os.environ))
    assert ray_executor.connect(ray, None)
    assert seen["RAY_worker_niceness"] == "0"


def test_a_ray_grid_gives_the_local_executors_results(cluster, local_grid, tmp_path):
    local, local_workdir = local_grid
    remote = run_json("run", *GRID, "--workdir", str(tmp_path), "--executor", "ray")
    assert [r["cell"] for r in remote] == [r["cell"] for r in local] and len(local) == 2
    for ours, theirs in zip(remote, local):
        assert {k: v for k, v in ours.items() if k not in TIMINGS} == {k: v for k, v in theirs.items() if k not in TIMINGS}
    assert store(tmp_path) == store(local_workdir)  # the same models, evaluations and results, written by the driver


def test_a_worker_killed_mid_training_is_retried(cluster, tmp_path):
    mark = tmp_path / "killed"
    plugin = tmp_path / "killed_once.py"
    plugin.write_text(f"MARK = {str(mark)!r}\n" + KILLED_ONCE_UNET)
    (result,) = run_json("run", *TINY, "--model", "killed_once_unet", "--plugin", str(plugin),
                         "--workdir", str(tmp_path / "work"), "--executor", "ray")
    assert mark.exists()  # a worker died inside a training, and Ray ran the task again
    assert result["clean_miou"] > 0 and len(list((tmp_path / "work" / "models").glob("*.safetensors"))) == 2


def test_a_killed_driver_resumes_without_retraining_finished_models(cluster, tmp_path):
    """Deterministic on a loaded machine: the second training cannot finish before the driver
    is killed (it waits at a gate), and the test waits for the first model, not for a time."""
    gate = tmp_path / "gate"
    plugin = tmp_path / "one_at_a_time.py"
    plugin.write_text(f"GATE = {str(gate)!r}\n" + ONE_AT_A_TIME_UNET)
    args = ["run", *TINY, "--model", "one_at_a_time_unet", "--plugin", str(plugin), "--workdir", str(tmp_path / "work"),
            "--executor", "ray", "--ray-address", cluster]
    models_dir = tmp_path / "work" / "models"
    driver = subprocess.Popen([sys.executable, "-m", "benchmark", "-q", *args],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while not list(models_dir.glob("*.json")) and driver.poll() is None:
        time.sleep(0.05)
    assert driver.poll() is None, "the driver ended before storing its first model"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = {p: p.stat().st_mtime_ns for p in models_dir.glob("*.safetensors") if p.with_suffix(".json").exists()}
    assert len(finished) == 1 and not list((tmp_path / "work").glob("results/*.json"))  # one of the cell's two models

    gate.touch()  # the resumed run may train the second model
    trained = artifacts.counters.trained
    (result,) = run_json(*args)
    assert len(list(models_dir.glob("*.safetensors"))) == 2 and result["clean_miou"] > 0
    assert artifacts.counters.trained - trained == 1
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # reused, never rewritten


def test_an_unreachable_cluster_is_one_line_exit_2(capsys, tmp_path):
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path), "--executor", "ray", "--ray-address", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the Ray cluster at '127.0.0.1:9'") and err.count("\n") == 1
    assert not (tmp_path / "models").exists()


def test_ray_not_installed_is_one_line_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --executor ray needs Ray, which is not installed") and err.count("\n") == 1


def test_ray_flags_need_the_ray_executor(capsys, tmp_path):
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path), "--gpus-per-task", "0.5"]) == 2
    assert "need --executor ray" in capsys.readouterr().err
