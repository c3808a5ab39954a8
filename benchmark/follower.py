"""The torchrun ranks other than 0: they train each model rank 0 announces, and nothing else
(:mod:`benchmark.distributed` says how the ranks share a training)."""

from __future__ import annotations

from benchmark import artifacts, datasets, distributed, poisoning
from benchmark.engine import resolve_device, seed_everything


def follow() -> None:
    """Train each model rank 0 announces, the same way it builds it, until it announces the end."""
    while (message := distributed.next_training()) is not None:
        spec, attacked = message
        data = datasets.load(spec.dataset, spec.workdir)
        attack = poisoning.make_attack(spec, data) if attacked else None
        seed_everything(spec.seed)  # as rank 0 builds it (DistributedDataParallel then copies rank 0's weights)
        model = artifacts.build_model(spec, data.num_classes, data.image_size)
        artifacts.train_model(spec, data, attack, resolve_device(spec.device), model, distributed.RankShare())
