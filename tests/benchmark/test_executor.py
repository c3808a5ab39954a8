"""Choosing an executor (issue 15): flags and TOML keys, checked before any work."""

import pytest

from benchmark.errors import BenchmarkError
from benchmark.executor import make_executor, run_local
from benchmark.ray_executor import RayExecutor


def test_local_is_the_default_and_takes_no_ray_settings():
    settings = {"attack": "fine_grained"}
    assert make_executor(settings) is run_local and settings == {"attack": "fine_grained"}
    with pytest.raises(BenchmarkError, match="need --executor ray"):
        make_executor({"ray_address": "head:6379"})


def test_ray_settings_from_a_toml_file_are_taken_out_of_the_grid_settings(tmp_path):
    settings = {"executor": "ray", "ray_address": "head:6379", "gpus_per_task": 0.25, "cpus_per_task": 2,
                "plugins": ["my_plugins"], "epochs": 1}
    executor = make_executor(settings)
    assert executor == RayExecutor("head:6379", 0.25, 2, ["my_plugins"]) and settings == {"plugins": ["my_plugins"], "epochs": 1}


@pytest.mark.parametrize("settings, message", [
    ({"executor": "dask"}, "unknown executor 'dask'; known: local, ray"),
    ({"executor": "ray", "gpus_per_task": 1.5}, "--gpus-per-task must be a fraction in"),
    ({"executor": "ray", "cpus_per_task": 0}, "--cpus-per-task must be >= 1"),
    ({"executor": "ray", "gpus_per_task": "half"}, "expect numbers"),
])
def test_bad_executor_settings_fail_early(settings, message):
    with pytest.raises(BenchmarkError, match=message):
        make_executor(settings)


def test_ray_cannot_run_under_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(BenchmarkError, match="cannot run under torchrun"):
        make_executor({"executor": "ray"})
