"""The training loop's batching: the same batches in memory and streamed, never a lone image."""

import torch

import models
from benchmark.datasets import synthetic
from benchmark.engine import TrainConfig, batch_indices, train


def test_a_trailing_single_image_joins_the_batch_before_it():
    sizes = [len(b) for b in batch_indices(torch.arange(9), 4)]
    assert sizes == [4, 5]
    assert [len(b) for b in batch_indices(torch.arange(8), 4)] == [4, 4]
    assert [len(b) for b in batch_indices(torch.arange(1), 4)] == [1]
    assert torch.equal(torch.cat(batch_indices(torch.arange(9), 4)), torch.arange(9))


def _trained(stream: bool, workers: int = 0) -> torch.nn.Module:
    data = synthetic.generate(9, 32, seed=0)  # 9 = 2 x 4 + 1: BatchNorm would fail on the last image
    torch.manual_seed(0)
    model = models.build("unet", len(synthetic.CLASS_NAMES))
    train(model, data.images, data.masks.to(torch.uint8), TrainConfig(epochs=2, batch_size=4),
          torch.device("cpu"), seed=0, stream=stream, workers=workers)
    return model


def test_streamed_batches_train_exactly_like_batches_in_memory():
    memory, streamed = _trained(stream=False), _trained(stream=True, workers=2)
    for (name, a), b in zip(memory.state_dict().items(), streamed.state_dict().values()):
        assert torch.equal(a, b), name
