"""Reliability (issue 7): one-line errors, SIGKILL and resume, damaged artifacts, two processes
on one workdir, and no unpickling of untrusted files."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark import runner
from benchmark.cli import main

ROOT = Path(__file__).parents[2]
TINY = ["--train-size", "48", "--test-size", "12", "--image-size", "32", "--epochs", "1",
        "--batch-size", "16", "--device", "cpu"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

DIVERGING_MODEL = '''
from torch import nn

import models


class Diverging(nn.Module):
    """Trains normally for 3 steps (one epoch of 48 images in batches of 16), then gives NaN."""

    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.conv(x)
        return out * float("nan") if self.calls > 3 else out


@models.register("diverging", size_divisor=1)
def diverging(num_classes, in_channels):
    return Diverging(num_classes, in_channels)
'''

PROBED_UNET = '''
import time
from pathlib import Path

import models


@models.register("probed_unet", size_divisor=32)
def probed_unet(num_classes, in_channels):
    """The zoo U-Net; each training step first marks PROBE and waits 0.1 s, so a test can kill
    the process while it is provably inside training."""
    model = models.build("unet", num_classes, in_channels)

    def probe(module, args):
        if module.training:
            Path(PROBE).touch()
            time.sleep(0.1)

    model.register_forward_pre_hook(probe)
    return model
'''


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", *args]


def file_under_a_file(tmp_path: Path, name: str) -> str:
    """A path that can be neither created nor written, even by root: its parent is a file."""
    (tmp_path / "a_file").write_text("")
    return str(tmp_path / "a_file" / name)


def empty_folder(tmp_path: Path) -> str:
    """A --data-root that exists but holds none of a layout's files."""
    (tmp_path / "root").mkdir()
    return str(tmp_path / "root")


def image_without_mask(tmp_path: Path) -> str:
    """A Cityscapes root with one image and no gtFine folder."""
    from PIL import Image

    folder = tmp_path / "root" / "leftImg8bit" / "train" / "aachen"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "aachen_000000_000019_leftImg8bit.png")
    return str(tmp_path / "root")


# (arguments after `run TINY --workdir W` or a callable of tmp_path giving them, expected part of the line)
BAD_INPUTS = {
    "unknown attack": (["--attack", "fine_grain"], "unknown attack 'fine_grain'; did you mean fine_grained?"),
    "unknown defense": (["--defense", "prunin"], "unknown defense 'prunin'; did you mean pruning?"),
    "unknown model": (["--model", "unett"], "unknown model 'unett'; did you mean unet"),
    "unknown dataset": (["--dataset", "synthetc"], "unknown dataset 'synthetc'; did you mean synthetic?"),
    "poison rate 0": (["--poison-rate", "0"], "poison_rate must be in (0, 1], got 0.0"),
    "poison rate above 1": (["--poison-rate", "1.5"], "poison_rate must be in (0, 1], got 1.5"),
    "poison rate not a number": (["--poison-rate", "ten"], "--poison-rate expects comma-separated floats"),
    "negative epochs": (["--epochs", "-1"], "--epochs must be >= 1, got -1"),
    "zero epochs": (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    "zero batch size": (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    "negative lr": (["--lr", "-1"], "--lr must be > 0"),
    "unknown target class": (["--attack-param", "target=bus"], "unknown class 'bus'; classes: road,"),
    "unknown victim class": (["--attack-param", "victims=bus"], "unknown class 'bus'"),
    "target equal to victim": (["--attack-param", "target=car"], "the target 'car' cannot also be a victim"),
    "class index out of range": (["--attack", "image_level", "--attack-param", "target=9"],
                                 "class index 9 out of range 0..7"),
    "missing data root": (["--dataset", "cityscapes"], "dataset 'cityscapes' needs --data-root DIR"),
    "data root absent": (lambda t: ["--dataset", "folder", "--data-root", str(t / "nowhere")], "does not exist"),
    "cityscapes layout": (lambda t: ["--dataset", "cityscapes", "--data-root", empty_folder(t)],
                          "cityscapes: found no ROOT/leftImg8bit/train/<city>/<x>_leftImg8bit.png under"),
    "cityscapes mask missing": (lambda t: ["--dataset", "cityscapes", "--data-root", image_without_mask(t)],
                                "_leftImg8bit.png has no mask; expected "),
    "ade20k layout": (lambda t: ["--dataset", "ade20k", "--data-root", empty_folder(t)],
                      "ade20k: found no ROOT/images/training/<x>.jpg under"),
    "voc layout": (lambda t: ["--dataset", "voc", "--data-root", empty_folder(t)],
                   "voc: ROOT/ImageSets/Segmentation/train.txt (one image id per line) not found under"),
    "folder layout": (lambda t: ["--dataset", "folder", "--data-root", empty_folder(t)],
                      "folder: ROOT/classes.txt (one class name per line) not found under"),
    "image size not divisible": (["--image-size", "40"],
                                 "model 'unet' needs image sides divisible by 32, got 40x40; try --image-size 32"),
    "image size too small": (["--image-size", "4"], "image size must be at least 8, got 4"),
    "clean fraction": (["--clean-fraction", "1.5"], "--clean-fraction must be in (0, 1), got 1.5"),
    "unknown device": (["--device", "tpu"], "--device must be auto, cpu or cuda, got 'tpu'"),
    "missing weights file": (lambda t: ["--init-weights", str(t / "none.safetensors")], "cannot be read"),
    "workdir not writable": (lambda t: ["--workdir", file_under_a_file(t, "w")],
                             "/a_file/w' cannot be written: Not a directory"),
    "workdir is a file": (lambda t: ["--workdir", file_under_a_file(t, "")],
                          "/a_file' cannot be written: it is a file"),
    "results not writable": (lambda t: ["--results", file_under_a_file(t, "r")],
                             "/a_file/r' cannot be written: Not a directory"),
    "missing config file": (["--config", "nowhere.toml"], "config file 'nowhere.toml' does not exist"),
}


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_without_traceback(case, capsys, tmp_path):
    args, expected = BAD_INPUTS[case]
    args = args(tmp_path) if callable(args) else args
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path / "work"), *args]) == 2
    assert_one_line_error(capsys.readouterr().err, expected)
    assert not (tmp_path / "work" / "models").exists()  # failed before any training


def test_a_real_process_prints_one_line_and_no_traceback(tmp_path):
    done = subprocess.run(cli("-q", "run", *TINY, "--workdir", file_under_a_file(tmp_path, "w")),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, "/a_file/w' cannot be written: Not a directory")


def test_debug_shows_the_traceback_flag_before_or_after_the_command(capsys, tmp_path):
    for argv in (["--debug", "run", "--attack", "fine_grain"], ["run", "--attack", "fine_grain", "--debug"]):
        assert main([*argv, "--workdir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: unknown attack")


def test_an_internal_error_is_one_line_exit_1(capsys, monkeypatch, tmp_path):
    def broken(spec):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(runner, "run", broken)
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path)]) == 1
    assert_one_line_error(capsys.readouterr().err, "internal error: RuntimeError: boom; second line "
                                                   "(rerun with --debug for the traceback)")


def test_an_unwritable_output_file_is_one_line_exit_1(capsys, tmp_path):
    results = ROOT / "leaderboard" / "results"
    assert main(["leaderboard", "--results", str(results), "--output", file_under_a_file(tmp_path, "LB.md")]) == 1
    assert_one_line_error(capsys.readouterr().err, "/a_file' is a file where a folder is needed")


def test_usage_errors_stay_argparse_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--epochs", "many"])
    assert exit_.value.code == 2 and "invalid int value: 'many'" in capsys.readouterr().err


def test_nan_loss_stops_naming_the_epoch_and_leaves_no_files(capsys, tmp_path):
    plugin = tmp_path / "diverging.py"
    plugin.write_text(DIVERGING_MODEL)
    work = tmp_path / "work"
    assert main(["-q", "run", *TINY, "--epochs", "2", "--model", "diverging", "--plugin", str(plugin),
                 "--workdir", str(work)]) == 2
    assert_one_line_error(capsys.readouterr().err, "train diverging/clean/seed0: loss became nan in epoch 2;")
    assert [p for folder in ("models", "evaluations", "results") for p in (work / folder).rglob("*")
            if p.suffix != ".lock"] == []


def test_a_malicious_pickle_is_refused_and_never_runs(capsys, tmp_path):
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    weights = tmp_path / "evil.pt"
    torch.save({"weight": Payload()}, weights)
    assert main(["-q", "run", *TINY, "--workdir", str(tmp_path / "work"), "--init-weights", str(weights)]) == 2
    assert_one_line_error(capsys.readouterr().err, f"refusing to load '{weights}': not a weights-only PyTorch file")
    assert not marker.exists()


def test_no_project_code_unpickles():
    """A source scan: pickle loads, unsafe torch.load and allow_pickle are absent."""
    unsafe = re.compile(r"pickle\.loads?\(|Unpickler|dill|joblib\.load|allow_pickle\s*=\s*True"
                        r"|(?<!safetensors\.)torch\.load\((?![^)]*weights_only=True)")
    sources = [p for folder in ("benchmark", "attacks", "defenses", "models", "leaderboard", "examples")
               for p in (ROOT / folder).rglob("*.py")]
    assert len(sources) > 20
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in sources
                 for n, line in enumerate(p.read_text().splitlines(), 1) if unsafe.search(line)]
    assert offenders == []


def sidecar_of(weights: Path) -> dict:
    return json.loads(weights.with_suffix(".json").read_text())


@pytest.mark.parametrize("damage", ["truncate", "flip a byte"])
def test_a_damaged_artifact_is_detected_and_rebuilt(damage, capsys, caplog, tmp_path):
    args = ["run", *TINY, "--json", "--attack", "image_level", "--workdir", str(tmp_path)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    attacked = tmp_path / "models" / f"{first['artifact']}.safetensors"
    data = attacked.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sidecar_of(attacked)["weights_sha256"]
    if damage == "truncate":
        attacked.write_bytes(data[:len(data) // 2])
    else:  # same size, valid safetensors: only the recorded hash can tell
        attacked.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    for folder in ("results", "evaluations"):  # make the run need the model again
        for path in (tmp_path / folder).glob("*.json"):
            path.unlink()
    caplog.clear()
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert f"ignoring damaged artifact {attacked}" in caplog.text
    assert attacked.read_bytes() == data  # rebuilt identically (same seed, same machine)
    assert {k: again[k] for k in ("clean_miou", "asr", "pba")} == {k: first[k] for k in ("clean_miou", "asr", "pba")}


@pytest.mark.parametrize("content", ['{"clean_miou": 0.5}', '{"clean_miou": 0.5, "asr"', ""])
def test_a_wrong_or_partial_evaluation_record_is_recomputed(content, capsys, caplog, tmp_path):
    args = ["run", *TINY, "--json", "--attack", "image_level", "--workdir", str(tmp_path)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    for path in (tmp_path / "results").glob("*.json"):
        path.unlink()
    for path in (tmp_path / "evaluations").glob("*.json"):
        path.write_text(content)
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert "will be recomputed" in caplog.text
    assert {k: again[k] for k in ("clean_miou", "asr", "baseline_asr")} == \
        {k: first[k] for k in ("clean_miou", "asr", "baseline_asr")}


def test_sigkill_mid_training_then_the_same_command_finishes(capsys, tmp_path):
    probe = tmp_path / "training_started"
    plugin = tmp_path / "probed.py"
    plugin.write_text(f"PROBE = {str(probe)!r}\n" + PROBED_UNET)
    args = ["run", *TINY, "--model", "probed_unet", "--plugin", str(plugin), "--attack", "image_level",
            "--json", "--workdir", str(tmp_path / "work")]
    process = subprocess.Popen(cli(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not probe.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # inside the first training step: at least 0.2 s of training left
    process.wait()
    assert probe.exists() and not list((tmp_path / "work" / "models").glob("*.safetensors"))

    assert main(args) == 0  # the same command, in this process
    (resumed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(list((tmp_path / "work" / "models").glob("*.safetensors"))) == 2
    assert main([*args[:-1], str(tmp_path / "fresh")]) == 0
    (fresh,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {k: resumed[k] for k in ("clean_miou", "asr", "pba", "baseline_asr")} == {
        k: fresh[k] for k in ("clean_miou", "asr", "pba", "baseline_asr")}


def test_two_processes_on_one_workdir_share_the_work(tmp_path):
    command = cli("run", *TINY, "--epochs", "2", "--attack", "image_level,fine_grained", "--json",
                  "--workdir", str(tmp_path))
    env = {**ENV, "OMP_NUM_THREADS": "1"}  # one core each: two-thread processes would spin on each other
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    trained = [int(re.search(r"trained (\d+) model\(s\)", err).group(1)) for _, err in outputs]
    reused_cells = sum(err.count("already finished; reusing its result") for _, err in outputs)
    assert sum(trained) == 3  # the clean model and two attacked ones, each trained once
    assert reused_cells == 2  # each of the two cells computed by one process, reused by the other
    assert outputs[0][0] == outputs[1][0]
    assert len(list((tmp_path / "results").glob("*.json"))) == 2
