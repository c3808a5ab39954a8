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
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from benchmark.augment import RandomCrops
from benchmark.datasets import IGNORE_INDEX
from benchmark.errors import BenchmarkError
from benchmark.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (part of every artifact key).

    The defaults reach the target numbers of the default U-Net on ``synthetic`` (clean mIoU
    0.93, fine-grained ASR 0.92) in under two minutes per model on a 2-core CPU: AdamW with a
    one-cycle schedule converges in a few epochs. The real-scale recipe (IBA, mmsegmentation)
    is ``optimizer="sgd"`` (poly schedule), ``lr=0.01``, ``crop_size`` and ``aux_weight=0.4``.
    """

    epochs: int = 7
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    """``adamw`` (one-cycle schedule) or ``sgd`` (momentum, poly schedule)."""
    momentum: float = 0.9
    """SGD's momentum (``sgd`` only)."""
    aux_weight: float = 0.4
    """Weight of the auxiliary head's loss, for models that have one (torchvision's DeepLabV3, FCN)."""
    crop_size: tuple[int, int] | None = None
    """Train on random ``(height, width)`` crops of randomly scaled, flipped images (None: whole images)."""
    compile: bool = False
    """``torch.compile`` the model for training; how it is trained, not what, so not in :meth:`key`."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise BenchmarkError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise BenchmarkError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise BenchmarkError(f"--lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise BenchmarkError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise BenchmarkError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 <= self.momentum < 1:
            raise BenchmarkError(f"--momentum must be in [0, 1), got {self.momentum}")
        if not self.aux_weight >= 0:
            raise BenchmarkError(f"--aux-weight must be >= 0, got {self.aux_weight}")
        if self.crop_size is not None and min(self.crop_size) < 8:
            raise BenchmarkError(f"--crop-size sides must be at least 8, got {self.crop_size[0]}x{self.crop_size[1]}")

    def key(self) -> dict[str, Any]:
        """What determines the trained weights (part of every artifact key). The fields added
        after the first artifacts are left out at their defaults, so those keys stay valid, and
        so is a setting that cannot act (``momentum`` without SGD); ``aux_weight`` is dropped by
        the artifact key of a model without an auxiliary head."""
        key = asdict(self)
        del key["compile"]
        if self.optimizer != "sgd":  # AdamW has no momentum setting: the same model whatever it holds
            del key["momentum"]
        for name in ADDED_FIELDS:
            if name in key and key[name] == TrainConfig.__dataclass_fields__[name].default:
                del key[name]
        return key


OPTIMIZERS = ("adamw", "sgd")
ADDED_FIELDS = ("optimizer", "momentum", "aux_weight", "crop_size")


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


def precision_name(device: str) -> str:
    """What ``autocast`` and ``prepare_model`` make of a device (``cpu``, ``cuda:0``), for reports."""
    return "bf16 autocast, channels_last" if torch.device(device).type == "cuda" else "fp32, channels_last"


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to ``device`` in channels_last (about 1.3x faster training on CPU and GPU)."""
    return model.to(device=device, memory_format=torch.channels_last)


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B,3,H,W]`` -> float in [0,1], channels_last."""
    return (images_uint8.float() / 255.0).contiguous(memory_format=torch.channels_last)


class Parallel(Protocol):
    """How a training is shared between processes (``benchmark.distributed.RankShare`` under
    torchrun); ``train`` is handed one, so the engine knows nothing of process groups."""

    def shard(self, orders: torch.Tensor) -> torch.Tensor:
        """This process's part of each epoch's order ``[epochs, n]``."""

    def batch_size(self, batch_size: int) -> int:
        """This process's images per step for a global batch of ``batch_size``."""

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module a training step calls (one that averages gradients over the processes)."""


BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(uint8 images, int64 masks, index) -> (images, masks)`` on the device, per training batch."""


def train(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, config: TrainConfig,
          device: torch.device, seed: int, desc: str = "train", transform: BatchTransform | None = None,
          stream: bool = False, workers: int = 0, parallel: Parallel | None = None) -> TrainStats:
    """Train ``model`` in place on uint8 ``images`` and integer ``masks``.

    ``transform`` rewrites each batch on the device (the runner swaps in poisoned rows there);
    with ``config.crop_size`` the transformed batch is then randomly scaled, cropped and flipped
    (:mod:`benchmark.augment`), so the poisoned pixels travel with the crop.
    ``stream`` keeps the data on the host and reads batches with ``workers`` processes.
    ``parallel`` shares the training with other processes (None: this process trains alone).
    """
    model = prepare_model(model, device)
    step_model = parallel.wrap(model, device) if parallel is not None else model
    if not stream:
        images, masks = images.to(device), masks.to(device)
    n = images.shape[0]
    shuffle = torch.Generator().manual_seed(seed)
    orders = torch.stack([torch.randperm(n, generator=shuffle) for _ in range(config.epochs)])
    batch_size = config.batch_size
    if parallel is not None:
        orders, batch_size = parallel.shard(orders), parallel.batch_size(batch_size)
    steps_per_epoch = len(batch_indices(orders[0], batch_size))
    total_steps = config.epochs * steps_per_epoch
    optimizer, schedule = make_optimizer(model, config, total_steps)
    if stream:  # one loader for the whole run, so its worker processes start once
        index_batches = [b for order in orders for b in batch_indices(order, batch_size)]
        batches = streamed_batches(images, masks, index_batches, device, workers)
    else:  # every epoch's order moves to the device at once: no transfer inside the loop
        index_batches = [b for order in orders.to(device) for b in batch_indices(order, batch_size)]
        batches = device_batches(images, masks, index_batches)
    crops = RandomCrops(config.crop_size) if config.crop_size is not None else None
    # the largest batch can take one image from a lone trailing batch (batch_indices)
    draws = crops.draws(total_steps, batch_size + 1, seed + 1, device) if crops else None
    forward = torch.compile(step_model) if config.compile else step_model
    model.train()
    loss_value = math.nan
    start = time.perf_counter()
    with Progress(total_steps, desc, "step", items_per_step=batch_size) as bar:
        for epoch in range(config.epochs):
            bar.note(epoch=f"{epoch + 1}/{config.epochs}")
            loss_sum = torch.zeros((), device=device)
            for step, (batch_images, batch_masks, index) in enumerate(itertools.islice(batches, steps_per_epoch)):
                batch_masks = batch_masks.long()
                if transform is not None:
                    batch_images, batch_masks = transform(batch_images, batch_masks, index)
                inputs = to_input(batch_images)
                if crops is not None:
                    inputs, batch_masks = crops(inputs, batch_masks, draws[epoch * steps_per_epoch + step])
                loss = train_step(forward, optimizer, inputs, batch_masks, device, config.aux_weight)
                schedule.step()
                loss_sum += loss.detach()
                bar.update()
            loss_value = float(loss_sum) / steps_per_epoch  # one host sync per epoch
            if not math.isfinite(loss_value):
                raise BenchmarkError(
                    f"{desc}: loss became {loss_value} in epoch {epoch + 1}; lower --lr "
                    f"(now {config.lr}) or check the data")
            bar.note(loss=f"{loss_value:.3f}")
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


def make_optimizer(model: nn.Module, config: TrainConfig,
                   total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with the one-cycle schedule, or SGD with momentum and the poly schedule."""
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        return optimizer, poly(optimizer, total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return optimizer, one_cycle(optimizer, config.lr, total_steps)


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Warm up over the first 20% of steps, then anneal: converges in a few epochs. Very short
    runs (a handful of steps, e.g. smoke tests) keep a constant rate, which OneCycleLR cannot do."""
    if total_steps < 10:
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.2)


POLY_POWER = 0.9


def poly(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The poly schedule of DeepLab and mmsegmentation: ``lr * (1 - step / total) ** 0.9``,
    stepped every iteration (mmseg also floors it at ``min_lr=1e-4``; here it reaches 0)."""
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=POLY_POWER)


def segmentation_loss(output: torch.Tensor | dict[str, torch.Tensor], targets: torch.Tensor,
                      aux_weight: float) -> torch.Tensor:
    """Per-pixel cross-entropy (ignore index skipped) of the logits, plus ``aux_weight`` times
    that of the auxiliary logits when the model returns ``{"out", "aux"}`` (torchvision)."""
    if isinstance(output, dict):
        loss = F.cross_entropy(output["out"].float(), targets, ignore_index=IGNORE_INDEX)
        if "aux" in output:
            loss = loss + aux_weight * F.cross_entropy(output["aux"].float(), targets, ignore_index=IGNORE_INDEX)
        return loss
    return F.cross_entropy(output.float(), targets, ignore_index=IGNORE_INDEX)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               targets: torch.Tensor, device: torch.device, aux_weight: float = TrainConfig.aux_weight) -> torch.Tensor:
    """One optimisation step of :func:`segmentation_loss`."""
    with autocast(device):
        output = model(inputs)
    loss = segmentation_loss(output, targets, aux_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


@torch.inference_mode()
def logits_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Float logits of a float image batch, in eval mode, with the device's autocast."""
    model.eval()
    with autocast(images.device):
        output = model(images.contiguous(memory_format=torch.channels_last))
    return (output["out"] if isinstance(output, dict) else output).float()
