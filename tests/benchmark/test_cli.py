"""The CLI end to end on a tiny synthetic configuration: run, cache reuse, grids, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli import main

TINY = ["--train-size", "48", "--test-size", "12", "--image-size", "32", "--epochs", "1",
        "--batch-size", "16", "--device", "cpu"]
REQUIRED_KEYS = {"dataset", "model", "attack", "defense", "poison_rate", "seed", "num_classes", "image_size",
                 "batch_size", "clean_miou", "asr", "pba", "baseline_asr", "post_clean_miou", "post_asr",
                 "post_pba", "der", "train_seconds", "train_images_per_second", "defense_seconds",
                 "attack_params", "defense_params"}


def run_json(capsys, *args: str) -> list[dict]:
    assert main(["run", *TINY, "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_run_reports_every_metric_and_no_defense_changes_nothing(capsys, tmp_path):
    (result,) = run_json(capsys, "--attack", "fine_grained", "--workdir", str(tmp_path))
    assert REQUIRED_KEYS <= set(result)
    for key in ("clean_miou", "asr", "pba", "baseline_asr"):
        assert 0 <= result[key] <= 1
    assert (result["post_clean_miou"], result["post_asr"], result["post_pba"]) == (
        result["clean_miou"], result["asr"], result["pba"])
    assert result["der"] == 0.5
    assert result["attack_params"]["victims"] == ["car"] and result["attack_params"]["target"] == "road"
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 2  # attacked + clean


def test_same_seed_fresh_workdirs_identical_numbers(capsys, tmp_path):
    keys = ("clean_miou", "asr", "pba", "baseline_asr")
    (a,) = run_json(capsys, "--attack", "image_level", "--workdir", str(tmp_path / "a"))
    (b,) = run_json(capsys, "--attack", "image_level", "--workdir", str(tmp_path / "b"))
    assert [a[k] for k in keys] == [b[k] for k in keys]


def test_grid_trains_each_model_once_and_reuses_the_clean_one(capsys, caplog, tmp_path):
    caplog.set_level("INFO")
    results = run_json(capsys, "--attack", "image_level,fine_grained", "--defense", "none,median",
                       "--workdir", str(tmp_path))
    assert len(results) == 4
    assert {(r["attack"], r["defense"]) for r in results} == {
        (a, d) for a in ("image_level", "fine_grained") for d in ("none", "median")}
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 3
    assert "trained 3 model(s)" in caplog.text
    assert len(list((tmp_path / "results").glob("*.json"))) == 4
    caplog.clear()
    again = run_json(capsys, "--attack", "image_level,fine_grained", "--defense", "none,median",
                     "--workdir", str(tmp_path))
    assert again == results and "trained 0 model(s)" in caplog.text


def test_config_file_and_flags(capsys, tmp_path):
    config = tmp_path / "grid.toml"
    config.write_text('attack = ["image_level"]\ndefense = ["bit_depth"]\n[defense_params.bit_depth]\nbits = 3\n')
    (result,) = run_json(capsys, "--config", str(config), "--workdir", str(tmp_path))
    assert result["defense"] == "bit_depth" and result["defense_params"] == {"bits": 3}


@pytest.mark.parametrize("args, message", [
    (["--attack", "fine_grain"], "unknown attack 'fine_grain'; did you mean fine_grained"),
    (["--defense", "prune"], "unknown defense 'prune'"),
    (["--model", "unet", "--image-size", "40"], "divisible by 32"),
    (["--defense", "median", "--defense-param", "kernel=2"], "kernel"),
    (["--attack-param", "trigger_size=big"], "expected int"),
    (["--dataset", "cityscapes"], "needs --data-root"),
    (["--clean-fraction", "1.5"], "clean-fraction"),
    (["--init-weights", "missing.safetensors"], "weights file 'missing.safetensors' cannot be read"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    assert main(["run", *TINY, "--workdir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_training_starts_from_local_weights(capsys, tmp_path):
    from safetensors.torch import save_file

    import models

    weights = tmp_path / "init.safetensors"
    save_file({k: v.contiguous() for k, v in models.build("pspnet", 8).state_dict().items()}, str(weights))
    (plain,) = run_json(capsys, "--model", "pspnet", "--workdir", str(tmp_path))
    (started,) = run_json(capsys, "--model", "pspnet", "--init-weights", str(weights), "--workdir", str(tmp_path))
    assert started["artifact"] != plain["artifact"]
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 4


def test_list_shows_every_kind(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("fine_grained", "image_level", "none", "pruning", "strip", "median", "shrink_pad",
                 "unet", "segformer", "synthetic", "cityscapes", "victims=car", "max_drop=0.1"):
        assert name in out


def test_leaderboard_and_export_from_run_results(capsys, tmp_path):
    run_json(capsys, "--attack", "image_level", "--workdir", str(tmp_path))
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "LB.md")]) == 0
    assert "image_level" in (tmp_path / "LB.md").read_text()
    assert main(["export", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.csv").read_text().count("\n") == 2


def test_killed_grid_resumes_without_redoing_finished_work(tmp_path):
    command = [sys.executable, "-m", "benchmark", "run", *TINY, "--attack", "image_level,fine_grained",
               "--defense", "none", "--workdir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "results"
    deadline = time.time() + 300
    while not any(results.glob("*.json")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # no chance to clean up
    process.wait()
    finished = {p.name: p.read_text() for p in results.glob("*.json")}
    assert len(finished) == 1
    models_before = set((tmp_path / "models").glob("*.safetensors"))
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(results.glob("*.json"))) == 2
    assert all((results / name).read_text() == text for name, text in finished.items())
    trained_again = len(set((tmp_path / "models").glob("*.safetensors")) - models_before)
    assert f"trained {trained_again} model(s)" in resumed.stderr and trained_again <= 1


def test_poisoning_plants_a_backdoor_the_clean_model_lacks(capsys, tmp_path):
    """End to end, the numbers come from the models: a small run already shows the backdoor."""
    (result,) = run_json(capsys, "--attack", "image_level", "--train-size", "256", "--epochs", "4",
                         "--poison-rate", "0.2", "--workdir", str(tmp_path))
    assert result["asr"] > 0.8 and result["baseline_asr"] < 0.3
