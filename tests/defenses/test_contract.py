"""A defense sees the trained model and the clean budget, and test data only as unlabelled images."""

import inspect

import torch
from torch import nn

from benchmark import runner
from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.poisoning import select_poison
from defenses import CleanBudget, Defense, ModelRepairDefense

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
    spec = runner.RunSpec(attack="fine_grained", defense="test_spy", model="pspnet", device="cpu",
                          dataset=DatasetConfig(image_size=32, train_size=40, test_size=6),
                          train=TrainConfig(epochs=1, batch_size=8), clean_fraction=0.25, workdir=str(tmp_path))
    SEEN["fit"].clear(), SEEN["predict"].clear()
    runner.run(spec)
    data = runner.load_dataset(spec)
    attack = runner.make_attack(spec, data)
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
