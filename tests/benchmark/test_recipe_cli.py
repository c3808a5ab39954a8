"""The zoo's and the recipe's flags and TOML keys: each bad value is one line on stderr and
exit status 2, given as a flag or as a key of a config file; ``list`` shows the zoo's sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--train-size", "4", "--test-size", "2", "--image-size", "32", "--epochs", "1", "--batch-size", "2",
        "--device", "cpu", "--workers", "0"]


def one_line_error(capsys, args: list[str]) -> str:
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(("flags", "message"), [
    (["--train-size", "0"], "--train-size must be at least 1, got 0"),
    (["--test-size", "0"], "--test-size must be at least 1, got 0"),
    (["--model", "pan"], "model 'pan' needs image sides of at least 128, got 32x32"),
    (["--model", "deeplabv3", "--encoder", "resnet5"], "unknown --encoder 'resnet5'"),
    (["--model", "unet_resnet18", "--crop-size", "64"], "--crop-size 64x64 is larger than the images"),
    (["--model", "deeplabv3plus", "--crop-size", "24"], "needs crop sides divisible by 16"),
    (["--crop-size", "abc"], "setting crop_size (--crop-size) must be a side or HEIGHTxWIDTH"),
    (["--image-size", "12x"], "setting image_size (--image-size) must be a side or HEIGHTxWIDTH"),
    (["--optimizer", "adam"], "--optimizer must be one of adamw, sgd"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--aux-weight", "-1"], "--aux-weight must be >= 0"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be >= 1"),
])
def test_bad_flags_are_one_line_errors(capsys, tmp_path, flags, message):
    assert message in one_line_error(capsys, [*TINY, "--workdir", str(tmp_path), *flags])


@pytest.mark.parametrize(("line", "message"), [
    ('epochs = "many"', "setting epochs (--epochs) must be an integer, got 'many'"),
    ("train_size = 0", "--train-size must be at least 1, got 0"),
    ("batch_size = true", "setting batch_size (--batch-size) must be an integer, got True"),
    ('optimizer = "adam"', "--optimizer must be one of adamw, sgd"),
    ('momentum = "high"', "setting momentum (--momentum) must be a number, got 'high'"),
    ("weight_decay = -1", "--weight-decay must be >= 0"),
    ("aux_weight = [1]", "setting aux_weight (--aux-weight) must be a number, got [1]"),
    ('crop_size = "abc"', "setting crop_size (--crop-size) must be a side or HEIGHTxWIDTH"),
    ("crop_size = [16, 16, 16]", "setting crop_size (--crop-size) must be a side or HEIGHTxWIDTH"),
    ('compile = "yes"', "setting compile (--compile) must be true or false, got 'yes'"),
    ("encoder = 3", "setting encoder (--encoder) must be a string, got 3"),
    ('model = "deeplabv3"\nencoder = "resnet5"', "unknown --encoder 'resnet5'"),
    ("encoder_weights = 1", "setting encoder_weights (--encoder-weights) must be a string, got 1"),
    ("eval_batch_size = 0", "--eval-batch-size must be >= 1"),
    ('image_size = "12x"', "setting image_size (--image-size) must be a side or HEIGHTxWIDTH"),
    ("model = 3", "setting model (--model) must be a name"),
])
def test_bad_config_keys_are_one_line_errors_naming_the_key(capsys, tmp_path, line, message):
    config = tmp_path / "grid.toml"
    config.write_text(f'workdir = "{tmp_path / "runs"}"\ndevice = "cpu"\n{line}\n')
    assert message in one_line_error(capsys, ["--config", str(config)])


def test_offline_encoder_weights_are_one_line_pointing_at_init_weights(capsys, tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache and outgoing traffic "
                                      "has been disabled.\nTo enable hf.co look-ups and downloads online, ...")

    monkeypatch.setattr("segmentation_models_pytorch.encoders.hf_hub_download", offline)
    err = one_line_error(capsys, [*TINY, "--workdir", str(tmp_path), "--model", "deeplabv3", "--encoder", "resnet18",
                                  "--encoder-weights", "imagenet"])
    assert "cannot fetch 'imagenet' weights for encoder 'resnet18'" in err and "--init-weights FILE" in err


def test_list_shows_each_models_parameters_and_sizes(capsys):
    assert main(["list"]) == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("model")}
    assert "encoder=tu-mobilenetv3_small_100" in rows["pan"] and "multiples of 32, >= 128" in rows["pan"]
    assert "aux head" in rows["deeplabv3_resnet50"] and "sizes: any" in rows["deeplabv3_resnet50"]
