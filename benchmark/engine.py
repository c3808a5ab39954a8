"""Training and inference on tensors: the harness's only contact with the model's arithmetic.

Data stays as uint8 tensors on the device; a step gathers a batch by index, converts it to
float and runs forward/backward, with no per-sample Python and no host syncs inside an epoch
(the loss is checked for NaN once per epoch). A split too large for memory is *streamed*
instead: it stays on the host (memory-mapped) and a DataLoader with worker processes and
pinned memory gathers the same batches in the same order, so both give identical numbers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark import distributed
from benchmark.datasets import IGNORE_INDEX
from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (part of every artifact key).

    The defaults reach the target numbers of the default U-Net on ``synthetic`` (clean mIoU
    0.93, fine-grained ASR 0.92) in under two minutes per model on a 2-core CPU: AdamW with a
    one-cycle schedule converges in a few epochs.
    """

    epochs: int = 7
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BenchmarkError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BenchmarkError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BenchmarkError(f"--lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class TrainStats:
    seconds: float
    images_per_second: float
    final_loss: float


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda requested but no CUDA GPU is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise BenchmarkError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Same seed, same config, same machine: identical numbers."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 mixed precision on CUDA only: measured slower than fp32 on CPUs."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device`` in channels_last (about 1.3x faster training on CPU and GPU)."""
    return model.to(device=device, memory_format=torch.channels_last)


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float in [0,1], channels_last."""
    return (images_uint8.float() / 255.0).contiguous(memory_format=torch.channels_last)


BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(uint8 images, int64 masks, index) -> (images, masks)`` on the device, per training batch."""


def train(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, config: TrainConfig,
          device: torch.device, seed: int, desc: str = "train", transform: BatchTransform | None = None,
          stream: bool = False, workers: int = 0) -> TrainStats:
    """Train ``model`` in place on uint8 ``images`` and integer ``masks``.

    ``transform`` rewrites each batch on the device (the runner swaps in poisoned rows there).
    ``stream`` keeps the data on the host and reads batches with ``workers`` processes.
    """
    model = prepare_model(model, device)
    step_model = distributed.wrap(model, device)  # DistributedDataParallel under torchrun
    if not stream:
        images, masks = images.to(device), masks.to(device)
    n = images.shape[0]
    shuffle = torch.Generator().manual_seed(seed)
    orders = distributed.shard(torch.stack([torch.randperm(n, generator=shuffle) for _ in range(config.epochs)]))
    batch_size = distributed.rank_batch_size(config.batch_size)
    steps_per_epoch = len(batch_indices(orders[0], batch_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = one_cycle(optimizer, config.lr, config.epochs * steps_per_epoch)
    if stream:  # one loader for the whole run, so its worker processes start once
        index_batches = [b for order in orders for b in batch_indices(order, batch_size)]
        batches = streamed_batches(images, masks, index_batches, device, workers)
    else:  # every epoch's order moves to the device at once: no transfer inside the loop
        index_batches = [b for order in orders.to(device) for b in batch_indices(order, batch_size)]
        batches = device_batches(images, masks, index_batches)
    model.train()
    loss_value = math.nan
    start = time.perf_counter()
    with tqdm(total=config.epochs * steps_per_epoch, desc=desc, unit="step", leave=False,
              disable=None) as bar:
        for epoch in range(config.epochs):
            loss_sum = torch.zeros((), device=device)
            for batch_images, batch_masks, index in itertools.islice(batches, steps_per_epoch):
                batch_masks = batch_masks.long()
                if transform is not None:
                    batch_images, batch_masks = transform(batch_images, batch_masks, index)
                loss = train_step(step_model, optimizer, to_input(batch_images), batch_masks, device)
                schedule.step()
                loss_sum += loss.detach()
                bar.update()
            loss_value = float(loss_sum) / steps_per_epoch  # one host sync per epoch
            if not math.isfinite(loss_value):
                raise BenchmarkError(
                    f"{desc}: loss became {loss_value} in epoch {epoch + 1}; lower --lr "
                    f"(now {config.lr}) or check the data")
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}")
    seconds = time.perf_counter() - start
    log.info("%s: %d epochs in %.1fs (%.0f images/s), final loss %.3f",
             desc, config.epochs, seconds, config.epochs * n / seconds, loss_value)
    return TrainStats(seconds, config.epochs * n / seconds, loss_value)


Batches = Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def batch_indices(order: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``order`` cut into batches; a trailing single image joins the batch before it, since
    BatchNorm layers after global pooling cannot train on one image."""
    batches = order.split(batch_size)
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches = (*batches[:-2], torch.cat(batches[-2:]))
    return batches


def device_batches(images: torch.Tensor, masks: torch.Tensor, index_batches: list[torch.Tensor]) -> Batches:
    """Batches gathered by index from tensors already on the device."""
    for index in index_batches:
        yield images[index], masks[index], index


class _Gather(Dataset):
    """Item ``i`` of the sampler is a whole batch of indices, gathered in a worker process."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index], index


def streamed_batches(images: torch.Tensor, masks: torch.Tensor, index_batches: list[torch.Tensor],
                     device: torch.device, workers: int) -> Batches:
    """The same batches read from host (usually memory-mapped) tensors by ``workers``
    processes, pinned when the device is a GPU, so reading overlaps the training steps."""
    loader = DataLoader(_Gather(images, masks), sampler=index_batches, batch_size=None, num_workers=workers,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    for batch_images, batch_masks, index in loader:
        yield (batch_images.to(device, non_blocking=True), batch_masks.to(device, non_blocking=True),
               index.to(device, non_blocking=True))


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm up over the first 20% of steps, then anneal: converges in a few epochs. Very short
    runs (a handful of steps, e.g. smoke tests) keep a constant rate, which OneCycleLR cannot do."""
    if total_steps < 10:
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.2)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               targets: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One optimisation step of per-pixel cross-entropy (ignore index skipped)."""
    with autocast(device):
        logits = model(inputs)
    loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.inference_mode()
def logits_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Float logits of a float image batch, in eval mode, with the device's autocast."""
    model.eval()
    with autocast(images.device):
        return model(images.contiguous(memory_format=torch.channels_last)).float()
