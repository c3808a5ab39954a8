"""Every registered attack end to end through the CLI on one tiny grid, ``list`` showing the
axes, the trigger contract for older plugins, and bad input as one line with exit 2."""

import json

import pytest
import torch

from attacks import Attack
from benchmark.cli import main
from benchmark.datasets.synthetic import CLASS_NAMES
from benchmark.plugins import load_plugin

ZOO = ["image_level", "fine_grained", "object_to_background", "iba", "iba_nni", "iba_prl", "object_to_object",
       "background_to_object", "background_to_background", "instance_level", "conditional", "blended", "sig",
       "wanet", "waba", "adaptive_blend", "adaptive_patch"]
TINY = ["--train-size", "48", "--test-size", "16", "--image-size", "32", "--epochs", "1", "--batch-size", "16",
        "--device", "cpu", "--plugin", "examples/tiny_model.py", "--model", "tiny_cnn"]


@pytest.fixture(scope="module")
def zoo_results(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("zoo")
    config = workdir / "zoo.toml"
    config.write_text(f"attack = {json.dumps(ZOO)}\n[attack_params.iba]\ntrigger_size = 4\n"
                      "[attack_params.iba_nni]\ntrigger_size = 4\n[attack_params.iba_prl]\ntrigger_size = 4\n"
                      "[attack_params.instance_level]\ntrigger_size = 4\n")
    with pytest.MonkeyPatch.context() as patch:
        lines = []
        patch.setattr("builtins.print", lambda *args, **kwargs: lines.append(" ".join(map(str, args))))
        assert main(["run", "--config", str(config), *TINY, "--workdir", str(workdir), "--json"]) == 0
    return {r["attack"]: r for r in map(json.loads, lines)}


def test_every_registered_attack_is_in_the_zoo_run():
    built_in = {name for name, cls in Attack.registry.items() if cls.__module__.startswith("attacks.")}
    assert set(ZOO) == built_in


def test_every_attack_runs_end_to_end_with_a_measured_asr(zoo_results):
    # object_to_background is fine_grained under another name: the same cell
    assert set(zoo_results) == set(ZOO) - {"object_to_background"}
    for name, result in zoo_results.items():
        assert 0 <= result["asr"] <= 1 and 0 <= result["baseline_asr"] <= 1, name
        assert 0 <= result["clean_miou"] <= 1, name
        assert result["poisoned_images"] > 0, name


def test_attacks_with_a_control_region_report_collateral_asr(zoo_results):
    with_control = {name for name, r in zoo_results.items() if "collateral_asr" in r}
    assert with_control == {"conditional", "instance_level"}
    for name in with_control:
        assert 0 <= zoo_results[name]["collateral_asr"] <= 1


def test_list_shows_each_attacks_axes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    (iba,) = [line for line in out.splitlines() if line.startswith("attack") and " iba_nni " in line]
    assert "centre [near, far] px from the victim" in iba and "victims -> target" in iba
    (waba,) = [line for line in out.splitlines() if line.startswith("attack") and " waba " in line]
    assert "all-to-all" in waba
    for name in ("adaptive_blend", "adaptive_patch"):
        (line,) = [line for line in out.splitlines() if line.startswith("attack") and f" {name} " in line]
        assert "cover images keep true labels" in line and "cover_rate=" in line, name


def test_a_trigger_without_masks_still_works_and_is_marked_custom():
    cls = load_plugin("examples/blend_attack.py").BlendStripes
    attack = cls.create({}, class_names=CLASS_NAMES)
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(attack.trigger(images, torch.zeros(2, 8, 8, dtype=torch.long)), attack.apply_trigger(images))
    assert cls.axis_choices()["trigger"] == "custom (BlendStripes.apply_trigger)"


@pytest.mark.parametrize("args, message", [
    (["--attack", "instance_level", "--plugin", "examples/stripes_dataset.py", "--dataset", "stripes",
      "--attack-param", "victims=blob", "--attack-param", "target=background"],
     "attack instance_level needs instance ids, but dataset stripes has none"),
    (["--attack", "iba_nni", "--attack-param", "near=9", "--attack-param", "far=2"], "near <= far"),
    (["--attack", "iba", "--attack-param", "trigger_size=40"], "trigger_size 40 is larger than the 32x32 image"),
    (["--attack", "fine_grained", "--attack-param", "trigger_size=100"], "trigger_size 100 is larger than the 32x32 image"),
    (["--attack", "image_level", "--attack-param", "trigger_pattern=top_line", "--attack-param", "trigger_size=33"],
     "trigger_size 33 is more rows than the 32x32 image has"),
    (["--attack", "conditional", "--attack-param", "condition=tram"], "unknown class 'tram'"),
    (["--attack", "iba", "--attack-param", "trigger_size=30"], "no training image is eligible"),
])
def test_bad_attack_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    assert main(["run", *TINY, "--workdir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
