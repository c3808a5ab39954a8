"""The example plugins in examples/: documented verbatim, working directly and through the CLI."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from attacks import Attack
from benchmark import datasets
from benchmark.cli import main
from benchmark.datasets import IGNORE_INDEX, DatasetConfig
from benchmark.plugins import load_plugin
from benchmark.engine import TrainConfig
from defenses import CleanBudget, Defense, PoisonedTrainingSet

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs" / "plugins.md"
FILES = ["blend_attack", "line_attack", "finetune_defense", "quantize_filter", "confidence_detector", "tiny_model",
         "stripes_dataset", "loss_filter"]
CLASSES = ("background", "stripe", "blob")


def load(stem: str):
    return load_plugin(str(EXAMPLES / f"{stem}.py"))


def documented_blocks() -> dict[str, str]:
    """``{example stem: code}`` for each ```python block whose preceding line names examples/X.py."""
    blocks = {}
    pattern = re.compile(r"^(?P<before>[^\n]*)\n+```python\n(?P<code>.*?)^```$", re.M | re.S)
    for match in pattern.finditer(DOCS.read_text()):
        named = re.search(r"examples/(\w+)\.py", match["before"])
        if named:
            blocks[named[1]] = match["code"]
    return blocks


def test_docs_embed_every_example_verbatim():
    blocks = documented_blocks()
    assert sorted(blocks) == sorted(FILES)
    for stem, code in blocks.items():
        assert code == (EXAMPLES / f"{stem}.py").read_text(), f"docs/plugins.md copy of examples/{stem}.py is stale"


def test_examples_are_short_and_documented():
    for stem in FILES:
        text = (EXAMPLES / f"{stem}.py").read_text()
        assert len(text.splitlines()) < 40, stem
        assert text.startswith('"""'), stem


def test_attack_example_overrides_only_the_verbs():
    module = load("blend_attack")
    cls = module.BlendStripes
    assert Attack.registry.get("blend_stripes") is cls
    methods = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")}
    assert methods == {"apply_trigger", "poison_label", "attack_region"}
    assert "__post_init__" not in vars(cls)

    attack = cls.create({"target": "background", "victim": "blob", "strength": "0.5"}, class_names=CLASSES)
    assert attack.target == 0 and attack.strength == 0.5
    images = torch.rand(2, 3, 8, 12)
    triggered = attack.apply_trigger(images)
    assert triggered.shape == images.shape and triggered.dtype == images.dtype
    assert not torch.equal(triggered, images) and 0 <= triggered.min() and triggered.max() <= 1
    masks = torch.tensor([[[0, 1, 2, IGNORE_INDEX]], [[2, 2, 1, 0]]])
    assert attack.attack_region(masks).tolist() == [[[False, False, True, False]], [[True, True, False, False]]]
    poisoned = attack.poison_label(masks)
    assert poisoned.dtype == masks.dtype
    assert poisoned.tolist() == [[[0, 1, 0, IGNORE_INDEX]], [[0, 0, 1, 0]]]


def test_parts_attack_example_composes_a_trigger_and_a_label_rule():
    cls = load("line_attack").LineAllToAll
    assert Attack.registry.get("line_all_to_all") is cls
    assert cls.axis_choices()["label rule"] == "all-to-all: c -> c+1 mod C"
    attack = cls.create({"target": "background", "trigger_size": "2"}, class_names=CLASSES)
    images = torch.full((1, 3, 4, 4), 0.5)
    masks = torch.tensor([[[0, 1, 2, IGNORE_INDEX]] * 4])
    triggered = attack.trigger(images, masks)
    assert bool((triggered[..., :2, :] == 0).all()) and torch.equal(triggered[..., 2:, :], images[..., 2:, :])
    assert attack.poison_label(masks)[0, 0].tolist() == [1, 2, 0, IGNORE_INDEX]
    assert attack.attack_region(masks)[0, 0].tolist() == [True, True, True, False]


def budget_and_model(num_classes: int = 3) -> tuple[CleanBudget, torch.nn.Module]:
    load("tiny_model")
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    masks = torch.randint(0, num_classes, (4, 12, 12))
    budget = CleanBudget(images, masks, CLASSES, torch.device("cpu"), batch_size=2)
    return budget, models.build("tiny_cnn", num_classes)


@pytest.mark.parametrize("stem, name, params", [
    ("finetune_defense", "plain_finetune", {"epochs": "1"}),
    ("quantize_filter", "quantize_flip", {"bits": "2"}),
    ("confidence_detector", "max_confidence", {"fpr": "0.25", "temperature": "2"}),
])
def test_defense_examples_fit_and_predict(stem, name, params):
    load(stem)
    defense = Defense.registry.get(name).create(params)
    budget, model = budget_and_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = defense.fit(model, budget)
    labels, rejected = predictor.predict(torch.rand(3, 3, 12, 12))
    assert labels.shape == (3, 12, 12) and labels.dtype == torch.int64
    assert rejected.shape == (3,) and rejected.dtype == torch.bool
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the given model changed"


def test_data_filter_example_flags_the_lowest_loss_segments():
    cls = load("loss_filter").LowLossFilter
    assert Defense.registry.get("low_loss_filter") is cls
    assert {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")} == {"flag"}
    budget, model = budget_and_model()
    data = PoisonedTrainingSet(budget.images, budget.masks, CLASSES, budget.device, lambda: model, TrainConfig(), 0)
    flags = cls.create({"fraction": "0.25"}).flag(model, data)
    losses = -flags.scores
    assert flags.level == "segment" and int(flags.flagged.sum()) == 3  # a quarter of 4 images x 3 classes
    assert losses[flags.flagged].max() <= losses[~flags.flagged & ~losses.isnan()].min()


def test_filter_example_inverts_its_flip():
    cls = load("quantize_filter").QuantizeFlip
    assert {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")} == {"filter", "invert"}
    flip = cls(bits=8)
    images = torch.rand(2, 3, 4, 6)
    assert torch.allclose(flip.filter(images), images.flip(-1), atol=1 / 255)
    assert torch.equal(flip.invert(flip.filter(images)), (images * 255).round() / 255)

    class Identity(torch.nn.Module):  # a "model" whose logits are its input: the map must line up
        def forward(self, x):
            return x

    budget, _ = budget_and_model()
    labels, _ = flip.fit(Identity(), budget).predict(images)
    assert torch.equal(labels, ((images * 255).round() / 255).argmax(dim=1))


def test_model_example_keeps_the_input_size():
    load("tiny_model")
    entry = models.registry.get("tiny_cnn")
    assert entry.size_divisor == 1
    assert models.build("tiny_cnn", 5, in_channels=1)(torch.rand(2, 1, 9, 13)).shape == (2, 5, 9, 13)


def test_dataset_example():
    load("stripes_dataset")
    data = datasets.build(DatasetConfig(name="stripes", image_size=32, train_size=8, test_size=4))
    assert data.class_names == CLASSES
    assert data.train.images.shape == (8, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.masks.shape == (4, 32, 32) and data.test.masks.dtype == torch.int64
    assert set(data.train.masks.unique().tolist()) == {0, 1, 2}
    again = datasets.build(DatasetConfig(name="stripes", image_size=32, train_size=8, test_size=4))
    assert torch.equal(again.train.images, data.train.images)
    other = datasets.build(DatasetConfig(name="stripes", image_size=32, train_size=8, test_size=4, seed=1))
    assert not torch.equal(other.train.images, data.train.images)
    assert not torch.equal(data.test.images, data.train.images[:4])


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_cli_runs_the_examples_end_to_end(tmp_path):
    plugins = [arg for stem in ("blend_attack", "quantize_filter", "tiny_model", "stripes_dataset")
               for arg in ("--plugin", f"examples/{stem}.py")]
    done = cli("run", *plugins, "--dataset", "stripes", "--model", "tiny_cnn", "--attack", "blend_stripes",
               "--attack-param", "target=background", "--attack-param", "victim=blob",
               "--defense", "quantize_flip", "--epochs", "1", "--train-size", "32", "--test-size", "8",
               "--image-size", "32", "--device", "cpu", "--workdir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(line)
    assert {"asr", "post_asr"} <= set(result)
    assert (result["attack"], result["defense"], result["model"]) == ("blend_stripes", "quantize_flip", "tiny_cnn")


def test_cli_lists_the_example_plugin(capsys):
    assert main(["list", "attacks", "--plugin", "examples/blend_attack.py"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "blend_stripes" in line]
    assert load("blend_attack").BlendStripes.summary() in row
    assert "victim=person" in row


def test_a_plugin_that_fails_to_import_is_one_line_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["list", "--plugin", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "broken_plugin.py" in err and "boom" in err
