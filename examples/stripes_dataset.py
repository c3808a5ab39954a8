"""``stripes``: a tiny procedural dataset: a slanted stripe and a round blob on a background.

An example dataset plugin: a function ``(DatasetConfig) -> SegmentationDataset`` whose splits
are uint8 images ``[N, 3, H, W]`` and int64 masks ``[N, H, W]``. It honours ``image_size``,
``train_size`` / ``test_size`` (default 512 / 128) and ``seed``; a split is a few tensor ops.
"""

import torch

from benchmark.datasets import DatasetConfig, SegmentationDataset, Split, register

CLASS_NAMES = ("background", "stripe", "blob")
COLOURS = torch.tensor([[0.3, 0.3, 0.3], [0.9, 0.8, 0.2], [0.2, 0.4, 0.9]])  # [class, rgb]


def generate(n: int, size: int, seed: int) -> Split:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda: torch.rand(n, 1, 1, generator=gen)  # noqa: E731  (one number per image)
    y, x = torch.meshgrid(*[(torch.arange(size) + 0.5) / size] * 2, indexing="ij")
    stripe = (x - rand() - (2 * rand() - 1) * y).abs() < 0.04 + 0.08 * rand()
    blob = (x - rand()) ** 2 + (y - rand()) ** 2 < (0.08 + 0.12 * rand()) ** 2
    masks = stripe.long().masked_fill(blob, 2)
    colours = COLOURS + 0.3 * (torch.rand(n, 3, 3, generator=gen) - 0.5)  # per-image jitter
    images = colours[torch.arange(n).view(-1, 1, 1), masks]  # [N, H, W, rgb]
    images = images + 0.05 * torch.randn(images.shape, generator=gen)
    return Split((images.clamp(0, 1) * 255).round().byte().permute(0, 3, 1, 2).contiguous(), masks)


@register("stripes")
def stripes(config: DatasetConfig) -> SegmentationDataset:
    """A stripe and a blob on a background (3 classes), generated from the seed."""
    train = generate(512 if config.train_size is None else config.train_size, config.image_size, 2 * config.seed)
    test = generate(128 if config.test_size is None else config.test_size, config.image_size, 2 * config.seed + 1)
    return SegmentationDataset("stripes", CLASS_NAMES, train, test)
