"""torchrun (issue 15): two gloo processes train each model together with
DistributedDataParallel, rank 0 alone writes and reports, and the numbers match one process.

The model has no BatchNorm: split over two ranks a global batch then gives the gradients of one
process up to float rounding, so the metrics agree (measured: identical to every digit). With
BatchNorm each rank normalises its half batch, and numbers are only close (README)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmark.cli import main

ROOT = Path(__file__).parents[2]
METRICS = ("clean_miou", "asr", "pba", "baseline_asr", "baseline_clean_miou", "post_asr")

PLAIN_CNN = '''
from torch import nn

import models


@models.register("plain_cnn", size_divisor=1)
def plain_cnn(num_classes, in_channels):
    """Three convolutions, no normalisation layer."""
    return nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(16, num_classes, 1))
'''


def test_two_gloo_processes_train_together_write_once_and_match_one_process(capsys, tmp_path):
    plugin = tmp_path / "plain.py"
    plugin.write_text(PLAIN_CNN)
    args = ["run", "--train-size", "32", "--test-size", "8", "--image-size", "32", "--epochs", "2", "--batch-size", "16",
            "--device", "cpu", "--model", "plain_cnn", "--plugin", str(plugin), "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "benchmark", *args, "--workdir", str(tmp_path / "ddp")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (distributed,) = [json.loads(line) for line in done.stdout.splitlines()]  # rank 0 alone reports
    for rank in (0, 1):
        assert f"torchrun rank {rank} of 2 (gloo)" in done.stderr
    assert done.stderr.count("train plain_cnn/fine_grained/seed0: 2 epochs") == 2  # both ranks trained it
    store = sorted(p.relative_to(tmp_path / "ddp").parent.as_posix() for p in (tmp_path / "ddp").rglob("*.json"))
    assert store == ["evaluations"] * 2 + ["models"] * 2 + ["results"]

    assert main(["-q", *args, "--workdir", str(tmp_path / "single")]) == 0
    (single,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert distributed["cell"] == single["cell"]
    for metric in METRICS:
        assert abs(distributed[metric] - single[metric]) < 1e-3, metric
