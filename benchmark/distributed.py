"""torchrun: one model trained by several processes with DistributedDataParallel.

``torchrun --nproc-per-node N -m benchmark run ...`` starts N copies of the command. Rank 0
runs the grid as a single process would: it alone reads and writes the store, evaluates and
fits defenses. The other ranks only join rank 0's trainings (:mod:`benchmark.follower`). When
rank 0 must train a model that is not in the store it announces it (the cell's spec) on a gloo control group; every rank
then builds the model the same way and trains it under DistributedDataParallel (nccl on CUDA,
gloo on CPU), each rank on its shard of every epoch's order with ``batch_size / N`` images a
step, so a step sees the same global batch as a single process. While rank 0 reuses a cached
model, evaluates or fits a defense, the other ranks wait for its next announcement on the
control group (CPU only, with a long timeout); at the end of the grid it announces the end and
they exit.

Departures from a single-process run, so numbers are close but not identical: BatchNorm
normalises over each rank's half batch (no SyncBatchNorm, which needs CUDA), the loss is
averaged per rank before the gradients are averaged (ranks may hold different numbers of
ignored pixels), sums are reduced in another order, and the last ``len(train) % N`` images of
each epoch's order are left out so that every rank takes the same number of steps.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = datetime.timedelta(days=7)
"""How long the other ranks wait for rank 0's next training (its evaluations and defenses
between two trainings can take hours)."""

_control: dist.ProcessGroup | None = None


def launched() -> bool:
    """Whether this process is one of several started by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str) -> None:
    """Join torchrun's process group (nccl for CUDA, gloo for the CPU) and open the control group."""
    global _control
    if not launched() or dist.is_initialized():
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group("nccl" if cuda else "gloo")
    except (RuntimeError, ValueError) as error:
        raise BenchmarkError(f"torchrun: cannot join the process group: {error}") from None
    _control = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    log.info("torchrun rank %d of %d (%s)", rank(), world_size(), "nccl" if cuda else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_follower() -> bool:
    """A torchrun rank other than 0: it joins trainings and writes nothing."""
    return rank() != 0


@contextlib.contextmanager
def shared_training(spec: Any, attacked: bool) -> Iterator["RankShare | None"]:
    """On rank 0 of a torchrun group: announce the training of ``spec``'s model (the attacked
    one, or the clean baseline) so every rank trains it in the block, and give the block this
    rank's share of it (None in a single process: the whole training)."""
    if world_size() == 1:
        yield None
        return
    dist.broadcast_object_list([(spec, attacked)], src=0, group=_control)
    yield RankShare()


def next_training() -> tuple[Any, bool] | None:
    """On the other ranks: the ``(spec, attacked)`` of rank 0's next training, or None at the
    end of the grid (then this rank leaves the process group)."""
    message: list[Any] = [None]
    dist.broadcast_object_list(message, src=0, group=_control)
    if message[0] is None:
        dist.destroy_process_group()
        return None
    return message[0]


def finish() -> None:
    """On rank 0 at the end of the grid: release the other ranks."""
    if world_size() == 1:
        return
    dist.broadcast_object_list([None], src=0, group=_control)
    dist.destroy_process_group()


class RankShare:
    """This rank's share of a training every rank takes part in: the engine's parallel seam
    (``benchmark.engine.Parallel``)."""

    def shard(self, orders: torch.Tensor) -> torch.Tensor:
        """This rank's part of each epoch's order ``[epochs, n]``: every ``world``-th image
        from its rank on, the uneven tail left out."""
        usable = orders.shape[1] // world_size() * world_size()
        return orders[:, rank():usable:world_size()]

    def batch_size(self, batch_size: int) -> int:
        """Images per step on this rank: the global batch split over the ranks."""
        if batch_size < world_size():
            raise BenchmarkError(f"--batch-size {batch_size} cannot be split over {world_size()} torchrun processes")
        return batch_size // world_size()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel, which averages the gradients over the ranks."""
        # static_graph: zoo encoders hold stages the decoder never uses, always the same ones
        return DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
                                       static_graph=True)
