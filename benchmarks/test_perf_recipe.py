"""The real-scale recipe's speed: DeepLabV3-ResNet-50 trained on crops, harness vs a bare loop.

Run on a GPU: ``PYTHONPATH=. .venv/bin/python -m pytest benchmarks/test_perf_recipe.py --benchmark-only -s``.

On CUDA: torchvision's DeepLabV3-ResNet-50 (auxiliary head, weight 0.4), 512x1024 images and
512x1024 crops after random scaling and flips, SGD with the poly schedule, batch 8, bf16
autocast, channels_last. The bare loop runs the same steps on pre-made crops (no poisoning,
no augmentation, no schedule); the ratio bare/harness is the harness's efficiency (target
>= 0.95). Model FLOP utilisation is the forward+backward FLOPs of one step (counted by
``torch.utils.flop_counter``) per second over the GPU's dense bf16 peak (``SEG_PEAK_TFLOPS``,
else a table of known GPUs). Without CUDA it runs the same code at 64x128, batch 2, as a
smoke test (no utilisation reported).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
from benchmark.augment import RandomCrops
from benchmark.datasets import synthetic
from benchmark.engine import TrainConfig, autocast, make_optimizer, prepare_model, segmentation_loss, to_input, train

CUDA = torch.cuda.is_available()
SIZE = (512, 1024) if CUDA else (64, 128)
BATCH = 8 if CUDA else 2
STEPS = 10 if CUDA else 2
NUM_CLASSES = 19
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
"""Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts)."""


def peak_flops() -> float | None:
    if "SEG_PEAK_TFLOPS" in os.environ:
        return float(os.environ["SEG_PEAK_TFLOPS"]) * 1e12
    name = torch.cuda.get_device_name() if CUDA else ""
    return next((tflops * 1e12 for gpu, tflops in PEAK_BF16_TFLOPS.items() if gpu in name), None)


def synchronize() -> None:
    if CUDA:
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def device() -> torch.device:
    return torch.device("cuda" if CUDA else "cpu")


@pytest.fixture(scope="module")
def scenes() -> tuple[torch.Tensor, torch.Tensor]:
    data = synthetic.generate(BATCH * STEPS, SIZE, seed=0)
    return data.images, data.masks


def recipe(compile_: bool = False) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=BATCH, optimizer="sgd", lr=0.01, crop_size=SIZE, compile=compile_)


def fresh_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return prepare_model(models.build("deeplabv3_resnet50", NUM_CLASSES), device)


def harness_seconds(model: torch.nn.Module, scenes, config: TrainConfig, device: torch.device) -> float:
    synchronize()
    start = time.perf_counter()
    train(model, *scenes, config, device, seed=0, desc="bench")
    synchronize()
    return time.perf_counter() - start


def bare_seconds(model: torch.nn.Module, crops: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    optimizer, _ = make_optimizer(model, recipe(), len(crops))
    model.train()
    synchronize()
    start = time.perf_counter()
    for x, y in crops:
        with autocast(device):
            output = model(x)
        loss = segmentation_loss(output, y, 0.4)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize()
    return time.perf_counter() - start


def test_recipe_training_vs_bare_loop(benchmark, report, scenes, device):
    """Harness images/s against the bare loop's, and model FLOP utilisation."""
    images, masks = scenes
    crop = RandomCrops(SIZE)
    draws = crop.draws(STEPS, BATCH, 1, device)
    crops = [crop(to_input(images[i * BATCH:(i + 1) * BATCH].to(device)), masks[i * BATCH:(i + 1) * BATCH].to(device),
                  draws[i]) for i in range(STEPS)]
    model = fresh_model(device)
    rounds, harness, bare = 3, [], []
    # the bare loop runs before each round, the first (warm-up: cuDNN autotuning, allocator) included
    benchmark.pedantic(lambda: harness.append(harness_seconds(model, scenes, recipe(), device)),
                       setup=lambda: bare.append(bare_seconds(model, crops, device)), rounds=rounds, warmup_rounds=1)
    harness, bare = harness[-rounds:], bare[-rounds:]
    ratio = statistics.median(b / h for b, h in zip(bare, harness))
    images_per_second = BATCH * STEPS / statistics.median(harness)
    with FlopCounterMode(display=False) as counter:
        with autocast(device):
            output = model(crops[0][0])
        segmentation_loss(output, crops[0][1], 0.4).backward()
    step_flops = counter.get_total_flops()
    peak = peak_flops()
    utilisation = step_flops * STEPS / statistics.median(harness) / peak if peak else float("nan")
    report(f"recipe training ({'x'.join(map(str, SIZE))}, batch {BATCH}): harness {images_per_second:.1f} img/s, "
           f"bare/harness {ratio:.2f} (target >= 0.95), {step_flops / 1e12:.2f} TFLOP per step, MFU {utilisation:.1%}",
           harness_images_per_s=images_per_second, ratio_bare_over_harness=ratio, target=0.95,
           target_met=ratio >= 0.95, tflop_per_step=step_flops / 1e12, model_flop_utilisation=utilisation)
    assert ratio >= 0.5, f"the harness is grossly slower than the bare loop ({ratio:.2f}x)"


@pytest.mark.skipif(not CUDA, reason="torch.compile is measured on GPUs; on this CPU it was slower (README)")
def test_what_compile_buys(benchmark, report, scenes, device):
    """Harness epoch time with ``--compile`` against without, after one compiling epoch each."""
    eager_model, compiled_model = fresh_model(device), fresh_model(device)
    harness_seconds(eager_model, scenes, recipe(), device)
    start = time.perf_counter()
    harness_seconds(compiled_model, scenes, recipe(compile_=True), device)
    compile_seconds = time.perf_counter() - start
    eager, compiled = [], []
    benchmark.pedantic(lambda: compiled.append(harness_seconds(compiled_model, scenes, recipe(compile_=True), device)),
                       setup=lambda: eager.append(harness_seconds(eager_model, scenes, recipe(), device)), rounds=3)
    speedup = statistics.median(eager) / statistics.median(compiled)
    report(f"--compile: {speedup:.2f}x the eager speed after a first epoch of {compile_seconds:.0f} s",
           compile_speedup=speedup, first_compiled_epoch_s=compile_seconds)
