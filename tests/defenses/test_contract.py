"""A defense sees what its kind's threat model allows and nothing else: the trained model and
the clean budget (post-training kinds, test data only as unlabelled images), or the poisoned
training set as the victim received it (training-time kinds); never the trigger, the target or
the poison indicator."""

import inspect
import shutil

import pytest
import torch
from torch import nn

from benchmark import artifacts, datasets, poisoning, runner
from benchmark.spec import RunSpec
from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.poisoning import poison_rows, select_poison
from defenses import CleanBudget, Defense, DetectionDefense, InputFilterDefense, ModelRepairDefense
from defenses.training import DataFilterDefense, Flags, PoisonedTrainingSet, TrainingDefense

SEEN: dict[str, list] = {"fit": [], "predict": []}


class SpyDefense(ModelRepairDefense):
    """Records everything the harness hands a defense."""

    name = "test_spy"

    def repair(self, model: nn.Module, budget: CleanBudget) -> nn.Module:
        SEEN["fit"].append(budget)
        return Recording(model)


class Recording(nn.Module):
    """Wraps the model so that every input the defended predictor receives is recorded."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        SEEN["predict"].append(images)
        return self.model(images)


def test_fit_takes_only_the_model_and_the_budget():
    for cls in (Defense, ModelRepairDefense):
        assert list(inspect.signature(cls.fit).parameters) == ["self", "model", "budget"]
    assert set(CleanBudget.__dataclass_fields__) == {"images", "masks", "class_names", "device", "batch_size"}


def test_budget_is_clean_training_data_and_test_data_arrives_unlabelled(tmp_path):
    spec = RunSpec(attack="fine_grained", defense="test_spy", model="pspnet", device="cpu",
                          dataset=DatasetConfig(image_size=32, train_size=40, test_size=6),
                          train=TrainConfig(epochs=1, batch_size=8), clean_fraction=0.25, workdir=str(tmp_path))
    SEEN["fit"].clear(), SEEN["predict"].clear()
    runner.run(spec)
    data = datasets.load(spec.dataset, spec.workdir)
    attack = poisoning.make_attack(spec, data)
    poisoned = set(select_poison(attack, data.train.masks, spec.seed).tolist())

    (budget,) = SEEN["fit"]
    assert len(budget) == 10
    train_images = data.train.images.flatten(1)
    for image, mask in zip(budget.images, budget.masks):
        matches = (train_images == image.flatten()).all(dim=1).nonzero().flatten().tolist()
        assert matches and not set(matches) & poisoned  # a clean, unpoisoned training image
        assert torch.equal(mask, data.train.masks[matches[0]])  # with its true labels
        assert not (data.test.images.flatten(1) == image.flatten()).all(dim=1).any()  # never test data
    # at test time the defense gets image batches only: no masks, no attack, no split
    assert SEEN["predict"] and all(isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point()
                                   for x in SEEN["predict"])


def test_budget_batches_never_end_with_a_single_image(make_budget):
    sizes = [len(images) for images, _ in make_budget(n=9, size=8, batch_size=4).batches()]
    assert sizes == [4, 5]
    assert [len(m) for _, m in make_budget(n=8, size=8, batch_size=4).batches()] == [4, 4]


# --- every kind: what the harness hands each kind of defense -----------------------------------

SEEN_BY_KIND: dict[str, list] = {}


class SpyDetector(DetectionDefense):
    name = "test_spy_detection"

    def setup(self, model: nn.Module, budget: CleanBudget) -> CleanBudget:
        SEEN_BY_KIND.setdefault("detection fit", []).append(budget)
        return budget

    def score(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        SEEN_BY_KIND.setdefault("detection predict", []).append(images)
        return images.mean(dim=(1, 2, 3))


class SpyFilter(InputFilterDefense):
    name = "test_spy_filter"

    def filter(self, images: torch.Tensor) -> torch.Tensor:
        SEEN_BY_KIND.setdefault("filter predict", []).append(images)
        return images


class SpyDataFilter(DataFilterDefense):
    name = "test_spy_data_filter"

    def flag(self, model: nn.Module, data: PoisonedTrainingSet) -> Flags:
        SEEN_BY_KIND.setdefault("data filter", []).append((model, data))
        return Flags(torch.zeros(len(data)), torch.zeros(len(data), dtype=torch.bool))


class SpyTraining(TrainingDefense):
    name = "test_spy_training"

    def train_model(self, data: PoisonedTrainingSet) -> tuple[nn.Module, Flags | None]:
        SEEN_BY_KIND.setdefault("training", []).append(data)
        return data.new_model(), None


def spec_of(zoo_run, defense: str, workdir) -> RunSpec:
    from benchmark.cli import build_parser, run_settings
    from benchmark.grid import build_grid

    args = build_parser().parse_args(["run", *zoo_run.args, "--defense", defense, "--workdir", str(workdir)])
    (spec,) = build_grid(run_settings(args)).cells()
    return spec


def test_each_kind_is_handed_only_what_its_threat_model_allows():
    assert list(inspect.signature(DetectionDefense.score).parameters) == ["self", "model", "images"]
    assert list(inspect.signature(InputFilterDefense.filter).parameters) == ["self", "images"]
    assert list(inspect.signature(DataFilterDefense.flag).parameters) == ["self", "model", "data"]
    assert list(inspect.signature(TrainingDefense.train_model).parameters) == ["self", "data"]
    # the training set carries no poison indicator, trigger, target or test data
    assert set(PoisonedTrainingSet.__dataclass_fields__) == {"images", "masks", "class_names", "device",
                                                             "new_model", "recipe", "seed"}


@pytest.mark.parametrize("name", ["test_spy_detection", "test_spy_filter"])
def test_post_training_kinds_see_the_budget_and_unlabelled_test_images(zoo_run, tmp_path, name):
    SEEN_BY_KIND.clear()
    shutil.copytree(zoo_run.workdir / "models", tmp_path / "models")
    runner.run(spec_of(zoo_run, name, tmp_path))
    for kind, seen in SEEN_BY_KIND.items():
        if kind.endswith("predict"):
            assert seen and all(isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point() for x in seen)
        else:
            assert all(isinstance(budget, CleanBudget) for budget in seen)


@pytest.mark.parametrize("name", ["test_spy_data_filter", "test_spy_training"])
def test_training_time_kinds_see_exactly_the_victims_training_set(zoo_run, tmp_path, name):
    SEEN_BY_KIND.clear()
    shutil.copytree(zoo_run.workdir / "models", tmp_path / "models")
    spec = spec_of(zoo_run, name, tmp_path)
    runner.run(spec)
    data = datasets.load(spec.dataset, spec.workdir)
    attack = poisoning.make_attack(spec, data)
    poisoned = select_poison(attack, data.train.masks, spec.seed)
    rows = poison_rows(attack, data.train, poisoned, torch.device("cpu"))
    images, masks, index = data.train.images, data.train.masks.long(), torch.arange(len(data.train))
    expected_images, expected_masks = rows(images, masks, index)  # the batch transform training applied

    (seen,) = SEEN_BY_KIND["data filter" if name == "test_spy_data_filter" else "training"]
    model, training_set = seen if isinstance(seen, tuple) else (None, seen)
    assert torch.equal(training_set.images, expected_images) and torch.equal(training_set.masks, expected_masks)
    test_images = data.test.images.flatten(1)
    assert not any((test_images == image.flatten()).all(dim=1).any() for image in training_set.images)
    assert training_set.recipe == spec.train and training_set.seed == spec.seed
    if model is not None:  # a data filter also gets the model trained on that set, and only it
        attacked, _ = artifacts.trained_model(spec, data, attack, torch.device("cpu"))
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), attacked.state_dict().values()))
