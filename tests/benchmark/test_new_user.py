"""A new user's first hour: inputs that used to slip through, and what the CLI says back."""

import json
import logging
from pathlib import Path

import pytest

import models
from attacks import Attack
from benchmark import artifacts, datasets
from benchmark.datasets import synthetic
from benchmark.cli import main
from benchmark.engine import TrainConfig
from benchmark.spec import RunSpec
from defenses import Defense

TINY = ["--train-size", "24", "--test-size", "4", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
        "--device", "cpu"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_plugins_string_in_a_config_is_one_plugin(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text('plugins = "no_such_plugin_file.py"\n')
    assert main(["run", "--config", str(config), *TINY, "--workdir", str(tmp_path)]) == 2
    assert "'no_such_plugin_file.py'" in one_line_error(capsys)  # not the letter 'n'


def test_a_plugins_setting_of_numbers_is_one_line(tmp_path, capsys):
    config = tmp_path / "grid.toml"
    config.write_text("plugins = [1, 2]\n")
    assert main(["run", "--config", str(config), *TINY, "--workdir", str(tmp_path)]) == 2
    assert "setting plugins must be a module or file name" in one_line_error(capsys)


def test_settings_that_cannot_act_stay_out_of_the_model_key():
    adamw = RunSpec(train=TrainConfig(momentum=0.5))
    assert artifacts.model_description(adamw, None) == artifacts.model_description(RunSpec(), None)
    sgd = RunSpec(train=TrainConfig(optimizer="sgd", momentum=0.5))
    assert artifacts.model_description(sgd, None)["train"]["momentum"] == 0.5
    no_aux = RunSpec(model="unet", train=TrainConfig(aux_weight=0.7))
    assert artifacts.model_description(no_aux, None) == artifacts.model_description(RunSpec(model="unet"), None)
    aux = RunSpec(model="fcn_resnet50", train=TrainConfig(aux_weight=0.7))
    assert artifacts.model_description(aux, None)["train"]["aux_weight"] == 0.7


def test_a_second_run_says_it_reused_the_finished_cell_and_generates_no_scenes(tmp_path, capsys, caplog,
                                                                                   monkeypatch):
    args = ["run", *TINY, "--workdir", str(tmp_path), "--defense", "none"]
    assert main(args) == 0
    datasets._built.cache_clear()  # as in a second process: nothing held in memory

    def no_generation(*args, **kwargs):
        raise AssertionError("the second run generated scenes again")

    monkeypatch.setattr(synthetic, "generate", no_generation)
    with caplog.at_level(logging.INFO, logger="benchmark"):
        assert main(args) == 0
    (done,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done in")]
    assert "0 cell(s) computed, 1 reused finished; trained 0 model(s)" in done


def test_list_filters_by_kind_and_name(capsys):
    assert main(["list", "defenses", "--name", "strip"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    assert len(rows) == 1 and rows[0].startswith("defense/detection") and " strip " in rows[0]
    assert main(["list", "attack", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["kind"] for e in entries} == {"attack"} and "fine_grained" in {e["name"] for e in entries}
    assert main(["list", "widgets"]) == 2
    assert "unknown kind 'widgets'" in one_line_error(capsys)


def test_list_wraps_to_the_terminal(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["list", "attacks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 125


def test_the_readme_counts_what_list_shows(capsys):
    """The built-in entries only: other tests register plugin models and attacks in this process."""
    assert main(["list", "--json"]) == 0
    kinds = [entry["kind"].split("/")[0] for entry in json.loads(capsys.readouterr().out)
             if entry_module(entry).split(".")[0] in ("attacks", "defenses", "models", "benchmark")]
    text = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"zoo\nof {kinds.count('model')} segmentation models" in text
    assert f"Attack\nplugins ({kinds.count('attack')}:" in text
    assert f"defense plugins ({kinds.count('defense') - 1}:" in text  # `none` is no defense


def entry_module(entry: dict) -> str:
    """The module that registered a ``list --json`` entry."""
    kind, name = entry["kind"].split("/")[0], entry["name"]
    if kind == "attack":
        return Attack.registry.get(name).__module__
    if kind == "defense":
        return Defense.registry.get(name).__module__
    if kind == "model":
        builder = models.registry.get(name).builder
        return getattr(builder, "func", builder).__module__  # library entries are partials
    return datasets.registry.get(name).__module__


def test_an_output_that_cannot_be_created_names_the_path_given(capsys):
    results = Path(__file__).parents[2] / "leaderboard" / "results"
    assert main(["export", "--results", str(results), "--output", "/proc/results.csv"]) == 1
    message = one_line_error(capsys)
    assert "'/proc/results.csv'" in message and ".tmp" not in message


def test_under_torchrun_each_log_line_names_its_rank(monkeypatch):
    from benchmark.cli import log_format

    assert log_format() == "[%(name)s] %(message)s"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert log_format().startswith("[rank 1] ")


def test_weights_of_another_architecture_show_what_does_not_fit(tmp_path, capsys):
    import safetensors.torch
    import torch

    path = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"backbone.conv.weight": torch.zeros(4, 3, 3, 3),
                                 "segmentation_head.0.weight": torch.zeros(5, 16, 3, 3)}, str(path))
    assert main(["run", *TINY, "--workdir", str(tmp_path), "--init-weights", str(path)]) == 2
    message = one_line_error(capsys)
    assert "does not fit this model" in message and " missing: " in message
    assert "1 unexpected: backbone.conv.weight" in message and "of another shape: segmentation_head.0.weight" in message


def test_a_defense_that_cannot_apply_is_a_not_applicable_cell(tmp_path, capsys):
    """SegFormer's encoder has LayerNorm, no BatchNorm: ANP and CLP record why, the grid goes on,
    and the leaderboard renders the cells."""
    assert main(["run", *TINY, "--model", "segformer", "--attack", "image_level", "--workdir", str(tmp_path),
                 "--defense", "anp,clp,median", "--json"]) == 0
    results = {r["defense"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    for name in ("anp", "clp"):
        assert "no BatchNorm" in results[name]["not_applicable"] and results[name]["post_asr"] is None
        assert results[name]["asr"] is not None
    assert "not_applicable" not in results["median"] and results["median"]["post_asr"] is not None
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "LB.md")]) == 0
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "html",
                 "--output", str(tmp_path / "LB.html")]) == 0


HIDDEN_HEAD_MODEL = """
import torch
from torch import nn

import models


@models.register("hidden_head", size_divisor=1)
def hidden_head(num_classes, in_channels):
    '''A model whose classifier is neither called segmentation_head nor the only num_classes conv.'''
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(in_channels, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())
            self.out = nn.Linear(5, num_classes)

        def forward(self, x):
            return self.out(self.body(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    return Net()
"""


def test_a_classifier_that_cannot_be_found_names_the_defense_and_a_remedy_it_has(tmp_path, capsys):
    plugin = tmp_path / "hidden_head.py"
    plugin.write_text(HIDDEN_HEAD_MODEL)
    args = ["run", *TINY, "--plugin", str(plugin), "--model", "hidden_head", "--workdir", str(tmp_path / "work")]
    assert main([*args, "--defense", "spectral"]) == 2
    message = one_line_error(capsys)
    assert message.startswith("error: spectral: cannot find the model's per-pixel classifier")
    assert "'segmentation_head' module" in message and "'layer'" not in message
    assert main([*args, "--defense", "pruning"]) == 2
    assert "error: pruning: " in (message := one_line_error(capsys)) and "set the defense parameter 'layer'" in message
