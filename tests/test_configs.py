"""Each configs/*.toml runs end to end on a miniature tree of its dataset's official layout,
with its models, optimiser, schedule and augmentation, but sizes and epochs made tiny."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from benchmark.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))
TINY = ["--train-size", "2", "--test-size", "1", "--poison-rate", "0.5", "--image-size", "32x64",
        "--crop-size", "32x32", "--workers", "0", "--epochs", "1", "--batch-size", "2", "--device", "cpu",
        "--encoder-weights", "none", "--defense", "none"]
"""Two training images (one poisoned), one step per model, one test image; no download, no defense."""


def test_there_is_a_config_per_dataset_read_from_disk() -> None:
    assert {tomllib.loads(path.read_text())["dataset"] for path in CONFIGS} == {"cityscapes", "voc", "ade20k"}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_config_runs_end_to_end_on_its_layout(config: Path, tmp_path: Path, official_layouts, capsys) -> None:
    settings = tomllib.loads(config.read_text())
    official_layouts[settings["dataset"]](tmp_path / "data", 2, 1)
    status = main(["run", "--config", str(config), "--data-root", str(tmp_path / "data"),
                   "--workdir", str(tmp_path / "runs"), "--json", *TINY])
    assert status == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    models = settings["model"] if isinstance(settings["model"], list) else [settings["model"]]
    assert [r["model"] for r in results] == models
    for result in results:
        assert result["dataset"] == settings["dataset"] and result["image_size"] == "32x64"
        assert 0 <= result["clean_miou"] <= 1 and result["poisoned_images"] >= 1
