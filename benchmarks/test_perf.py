"""The performance suite (DESIGN sections 6 and 8): the harness against its floor, in-process.

Run: ``PYTHONPATH=. .venv/bin/python -m pytest benchmarks/ --benchmark-only -s``.

Each test measures one harness function with the ``benchmark`` fixture and its floor or peer
with ``time.perf_counter`` in the same process, interleaved round by round (the peer runs in
pedantic's untimed ``setup``/``teardown``, alternating before and after), so that a busy
machine slows both alike. Ratios are medians of
per-round ratios. Default model ``unet`` at 64x64, 8 classes, batch 32, on the CPU.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import models
from benchmark import artifacts, metrics, runner
from benchmark.spec import RunSpec
from benchmark.store import read_json
from benchmark.datasets import IGNORE_INDEX, DatasetConfig, Split, synthetic
from benchmark.datasets.decode import Sample, load_split
from benchmark.engine import TrainConfig, logits_of, prepare_model, to_input, train, train_step
from benchmark.poisoning import poison_rows
from defenses import CleanBudget, Defense
from defenses.base import DetectingPredictor

NUM_CLASSES = 8
BATCH = 32


class Recorder:
    """Wrap a function so that every call's duration is recorded (warmup calls included)."""

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn, self.seconds = fn, []

    def __call__(self):
        start = time.perf_counter()
        out = self.fn()
        self.seconds.append(time.perf_counter() - start)
        return out

    def last(self, rounds: int) -> list[float]:
        """The timed rounds (pedantic's warmup rounds come first)."""
        return self.seconds[-rounds:]


class Alternating:
    """Run ``peer`` once per pedantic round, before the measured call on even rounds and after
    it on odd ones (pass ``setup=`` and ``teardown=``): on a busy machine the second of two
    back-to-back runs is often several % slower, so a fixed order would bias the ratio."""

    def __init__(self, peer: Callable[[], object]) -> None:
        self.peer, self.rounds = peer, 0

    def setup(self) -> None:
        if self.rounds % 2 == 0:
            self.peer()

    def teardown(self) -> None:
        if self.rounds % 2 == 1:
            self.peer()
        self.rounds += 1


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over rounds of numerator/denominator (rounds interleaved, so paired)."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def side_by_side(benchmark, measured: Callable[[], object], peer: Callable[[], object],
                 rounds: int) -> tuple[list[float], list[float]]:
    """Benchmark ``measured`` with ``peer`` run alternately around it; both rounds' seconds."""
    measured_rec, peer_rec = Recorder(measured), Recorder(peer)
    order = Alternating(peer_rec)
    benchmark.pedantic(measured_rec, setup=order.setup, teardown=order.teardown, rounds=rounds, warmup_rounds=1)
    return measured_rec.last(rounds), peer_rec.last(rounds)


# --- 1. training: engine.train vs a bare loop ------------------------------------------------

def test_training_vs_bare_loop(benchmark, report, make_unet, data: Split, cpu):
    """``engine.train`` for one epoch over 256 images vs the bare floor: the same model, batch
    and number of AdamW steps on pre-made float channels_last tensors. Target >= 0.90."""
    rounds = 6
    model = make_unet()
    config = TrainConfig(epochs=1, batch_size=BATCH)
    n = len(data)
    inputs = [to_input(data.images[i:i + BATCH]) for i in range(0, n, BATCH)]
    targets = [data.masks[i:i + BATCH] for i in range(0, n, BATCH)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def bare_epoch() -> None:
        model.train()
        for x, y in zip(inputs, targets):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    bare = Recorder(bare_epoch)
    harness = Recorder(lambda: train(model, data.images, data.masks, config, cpu,
                                     seed=len(bare.seconds), desc="bench"))
    order = Alternating(bare)
    benchmark.pedantic(harness, setup=order.setup, teardown=order.teardown, rounds=rounds, warmup_rounds=1)

    ratio = paired_ratio(bare.last(rounds), harness.last(rounds))
    harness_ips = n / statistics.median(harness.last(rounds))
    bare_ips = n / statistics.median(bare.last(rounds))
    report(f"training: harness {harness_ips:.0f} img/s, bare {bare_ips:.0f} img/s, "
           f"ratio {ratio:.2f} (target >= 0.90)",
           harness_images_per_s=harness_ips, bare_images_per_s=bare_ips,
           ratio_harness_over_bare=ratio, target=0.90, target_met=ratio >= 0.90)
    assert ratio >= 0.7, f"harness training is grossly slower than the bare loop ({ratio:.2f}x)"


# --- 2. poisoning: trigger + label rule vs a training step -----------------------------------

def test_poisoning_vs_train_step(benchmark, report, make_unet, data: Split, cpu, fine_grained):
    """fine_grained ``apply_trigger`` + ``poison_label`` + ``attack_region`` on a batch of 32
    as a fraction of one training step on that batch. Target < 2%."""
    images, masks = to_input(data.images[:BATCH]), data.masks[:BATCH]

    def poison():
        return (fine_grained.apply_trigger(images), fine_grained.poison_label(masks),
                fine_grained.attack_region(masks))

    # the training step is measured before and after, on the same batch
    model = make_unet().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = lambda: train_step(model, optimizer, images, masks, cpu)  # noqa: E731
    step()
    steps = [timed(step) for _ in range(2)]
    poisoner = Recorder(poison)
    rounds = 50
    benchmark.pedantic(poisoner, rounds=rounds, warmup_rounds=1)
    steps += [timed(step) for _ in range(2)]

    # the harness's per-step path: swapping the (precomputed) poisoned rows into a batch
    chunk = Split(data.images[:BATCH], data.masks[:BATCH])
    index = torch.arange(BATCH)
    rows = poison_rows(fine_grained, chunk, index[::10], cpu)  # 10% poisoned, as by default
    batch_images, batch_masks = chunk.images[index], chunk.masks[index]
    swap_s = min(timed(lambda: rows(batch_images, batch_masks, index)) for _ in range(20))

    poison_s, step_s = statistics.median(poisoner.last(rounds)), statistics.median(steps)
    fraction = poison_s / step_s
    report(f"poisoning: {poison_s * 1e3:.2f} ms per batch of 32, train step {step_s * 1e3:.0f} ms, "
           f"{100 * fraction:.2f}% of a step (target < 2%); swapping poisoned rows into a batch "
           f"{swap_s * 1e3:.3f} ms ({100 * swap_s / step_s:.2f}%)",
           poison_ms=poison_s * 1e3, train_step_ms=step_s * 1e3, fraction_of_step=fraction,
           swap_ms=swap_s * 1e3, swap_fraction_of_step=swap_s / step_s,
           target=0.02, target_met=fraction < 0.02)
    assert fraction < 0.2, f"poisoning a batch costs {100 * fraction:.0f}% of a training step"


# --- 3. metrics: confusion matrix + mIoU vs torchmetrics and a naive loop ---------------------

def naive_miou(batches: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> tuple[float, torch.Tensor]:
    """Per-class Python loop with boolean masks: the obvious implementation."""
    tp = torch.zeros(num_classes, dtype=torch.long)
    fp, fn = torch.zeros_like(tp), torch.zeros_like(tp)
    for pred, target in batches:
        valid = target != IGNORE_INDEX
        for c in range(num_classes):
            is_pred, is_true = (pred == c) & valid, target == c
            tp[c] += (is_pred & is_true).sum()
            fp[c] += (is_pred & ~is_true).sum()
            fn[c] += (~is_pred & is_true).sum()
    union = tp + fp + fn
    iou = torch.where(union > 0, tp.double() / union.clamp(min=1), torch.full((num_classes,), math.nan, dtype=torch.double))
    return float(iou[union > 0].mean()), iou


def test_metrics_vs_torchmetrics(benchmark, report):
    """Accumulated ``confusion_matrix`` + ``mean_iou`` over 20 batches of 64 64x64 maps vs
    torchmetrics' MulticlassJaccardIndex and a naive per-class loop; values equal to 1e-6."""
    from torchmetrics.classification import MulticlassJaccardIndex

    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(20):
        # class 7 is absent from truth and prediction: exercises the absent-class convention
        target = torch.randint(0, NUM_CLASSES - 1, (64, 64, 64), generator=generator)
        noise = torch.randint(0, NUM_CLASSES - 1, target.shape, generator=generator)
        pred = torch.where(torch.rand(target.shape, generator=generator) < 0.7, target, noise)
        target[torch.rand(target.shape, generator=generator) < 0.05] = IGNORE_INDEX
        batches.append((pred, target))

    def ours():
        cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
        for pred, target in batches:
            cm += metrics.confusion_matrix(pred, target, NUM_CLASSES)
        return metrics.mean_iou(cm), metrics.per_class_iou(cm)

    # macro averaging in torchmetrics gives classes absent from truth and prediction weight 0,
    # the same convention as ours (mmsegmentation's); validate_args=False is its bare arithmetic
    tm_macro = MulticlassJaccardIndex(num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX, average="macro",
                                      validate_args=False)
    tm_checked = MulticlassJaccardIndex(num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX, average="macro")
    tm_none = MulticlassJaccardIndex(num_classes=NUM_CLASSES, ignore_index=IGNORE_INDEX, average="none")

    def torchmetrics_run(metric):
        metric.reset()
        for pred, target in batches:
            metric.update(pred, target)
        return metric.compute()

    peer_times = {"torchmetrics": [], "torchmetrics_validated": [], "naive": []}

    def peers():
        peer_times["torchmetrics"].append(timed(lambda: torchmetrics_run(tm_macro)))
        peer_times["torchmetrics_validated"].append(timed(lambda: torchmetrics_run(tm_checked)))
        peer_times["naive"].append(timed(lambda: naive_miou(batches, NUM_CLASSES)))

    rounds = 8
    recorder = Recorder(ours)
    order = Alternating(peers)
    miou, iou = benchmark.pedantic(recorder, setup=order.setup, teardown=order.teardown, rounds=rounds,
                                   warmup_rounds=1)

    # agreement
    tm_miou = float(torchmetrics_run(tm_macro))
    tm_iou = torchmetrics_run(tm_none).double()
    naive_value, naive_iou = naive_miou(batches, NUM_CLASSES)
    present = ~iou.isnan()
    assert not present[NUM_CLASSES - 1] and present[:-1].all()
    assert abs(miou - tm_miou) < 1e-6, (miou, tm_miou)
    assert torch.allclose(iou[present], tm_iou[present], atol=1e-6, rtol=0)
    assert abs(miou - naive_value) < 1e-12 and torch.allclose(iou, naive_iou, equal_nan=True)

    ours_times = recorder.last(rounds)
    speed = {name: paired_ratio(times[-rounds:], ours_times) for name, times in peer_times.items()}
    report(f"metrics: ours {statistics.median(ours_times) * 1e3:.1f} ms, torchmetrics "
           f"{statistics.median(peer_times['torchmetrics'][-rounds:]) * 1e3:.1f} ms "
           f"(validated {statistics.median(peer_times['torchmetrics_validated'][-rounds:]) * 1e3:.1f} ms), naive "
           f"{statistics.median(peer_times['naive'][-rounds:]) * 1e3:.1f} ms; ours is {speed['torchmetrics']:.2f}x "
           f"torchmetrics ({speed['torchmetrics_validated']:.2f}x validated), {speed['naive']:.1f}x naive; "
           f"mIoU {miou:.6f} = torchmetrics {tm_miou:.6f}",
           ours_ms=statistics.median(ours_times) * 1e3,
           speedup_vs_torchmetrics=speed["torchmetrics"],
           speedup_vs_torchmetrics_validated=speed["torchmetrics_validated"],
           speedup_vs_naive=speed["naive"], miou=miou, torchmetrics_miou=tm_miou,
           target_met=speed["torchmetrics"] >= 1.0)


# --- 4. STRIP: defended inference vs N plain inferences --------------------------------------

def test_strip_vs_plain_inference(benchmark, report, make_unet, data: Split, cpu):
    """``strip`` predict_scored on 16 images with n=32 vs 32 x logits_of on the 16 images
    (the work STRIP cannot avoid). Target >= 0.85."""
    n, batch = 32, 16
    model = make_unet()
    defense = Defense.registry.get("strip").create({"n": n})
    budget = CleanBudget(data.images[:64], data.masks[:64], synthetic.CLASS_NAMES, cpu, BATCH)
    defense.setup(model, budget)  # the overlay pool; the threshold is irrelevant to speed
    predictor = DetectingPredictor(model, defense, threshold=0.0)
    images = to_input(data.images[64:64 + batch])
    blends = 0.5 * images.repeat_interleave(n, dim=0) + 0.5 * images.repeat(n, 1, 1, 1)

    peer_times = {"plain_x_n": [], "one_blend_forward": []}

    def peers():
        peer_times["plain_x_n"].append(timed(lambda: [logits_of(model, images) for _ in range(n)]))
        peer_times["one_blend_forward"].append(timed(lambda: logits_of(model, blends)))

    rounds = 4
    strip = Recorder(lambda: predictor.predict_scored(images))
    order = Alternating(peers)
    benchmark.pedantic(strip, setup=order.setup, teardown=order.teardown, rounds=rounds, warmup_rounds=1)

    strip_times = strip.last(rounds)
    ratio = paired_ratio(peer_times["plain_x_n"][-rounds:], strip_times)
    floor_ratio = paired_ratio(peer_times["one_blend_forward"][-rounds:], strip_times)
    strip_ips = batch / statistics.median(strip_times)
    report(f"strip: {strip_ips:.1f} defended img/s (n={n}); {ratio:.2f}x the speed of {n} x plain "
           f"inference (target >= 0.85), {floor_ratio:.2f}x one forward of the {batch * n} blends",
           strip_images_per_s=strip_ips, ratio_vs_n_plain=ratio, ratio_vs_blend_forward=floor_ratio,
           target=0.85, target_met=ratio >= 0.85)
    assert ratio >= 0.5, f"STRIP is grossly slower than {n} plain inferences ({ratio:.2f}x)"


# --- 5. grid reuse: one more defense on a cached attacked model ------------------------------

def test_grid_reuse(benchmark, report, tmp_path: Path):
    """``runner.run`` of a tiny cell (trains clean + attacked models) vs a second cell with
    another defense (``median``) that reuses both models from the artifact cache."""
    dataset = DatasetConfig(train_size=128, test_size=32)
    base = dict(dataset=dataset, train=TrainConfig(epochs=1), device="cpu", workdir=str(tmp_path))
    trained_before = artifacts.counters.trained
    first_s = timed(lambda: runner.run(RunSpec(defense="none", **base)))
    assert artifacts.counters.trained - trained_before == 2, "the first run should train two models"
    sidecars = [read_json(p) for p in (tmp_path / "models").glob("*.json")]
    train_s = sum(s["train_seconds"] for s in sidecars)

    def forget_results() -> None:  # a finished cell is never recomputed: make it unfinished
        shutil.rmtree(tmp_path / "results", ignore_errors=True)

    rounds = 2
    add = Recorder(lambda: runner.run(RunSpec(defense="median", **base)))
    trained_before = artifacts.counters.trained
    result = benchmark.pedantic(add, setup=forget_results, rounds=rounds, warmup_rounds=1)
    assert artifacts.counters.trained == trained_before, "adding a defense retrained a model"
    add_s = statistics.median(add.last(rounds))

    # extrapolation to the default cell (2000 train x 8 epochs, 300 test images): training grows
    # with train_size x epochs, evaluation with test_size
    default_ratio = (add_s * 300 / 32) / (train_s * (2000 * 8) / 128)
    # the rest of a reused cell: loading both models and re-evaluating them (baseline, before)
    own_s = result["defense_seconds"] + result["eval_seconds"]
    report(f"grid reuse: first cell {first_s:.1f} s (training {train_s:.1f} s), adding a defense "
           f"{add_s:.2f} s = {add_s / first_s:.2f}x the first cell, {add_s / train_s:.2f}x its training "
           f"(the defense's own fit + evaluation {own_s:.2f} s, the rest reloads and re-evaluates the "
           f"cached models); extrapolated to the default config ~{default_ratio:.3f}x",
           first_cell_s=first_s, training_s=train_s, add_defense_s=add_s,
           ratio_vs_first_cell=add_s / first_s, ratio_vs_training=add_s / train_s,
           extrapolated_default_ratio=default_ratio, defense_s=result["defense_seconds"],
           defense_own_fraction=own_s / add_s,
           eval_s=result["eval_seconds"])
    assert add_s < first_s, "adding a defense to a cached model should cost less than training"


# --- 6. scaling with image size and batch size ------------------------------------------------

def test_scaling(benchmark, report, make_unet, cpu):
    """Training-step and inference time at 64/128/256 px (batch 8) and batch 8/16/32 (64 px),
    per pixel relative to 64x64 batch 8, so a full-size run can be predicted."""
    model = make_unet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    configs = [(8, 64), (8, 128), (8, 256), (16, 64), (32, 64)]  # (batch, size)
    tensors = {}
    for batch, size in configs:
        x = torch.rand(batch, 3, size, size, generator=generator).contiguous(memory_format=torch.channels_last)
        tensors[batch, size] = (x, torch.randint(0, NUM_CLASSES, (batch, size, size), generator=generator))

    def step(batch: int, size: int):
        model.train()
        return train_step(model, optimizer, *tensors[batch, size], cpu)

    def infer(batch: int, size: int):
        return logits_of(model, tensors[batch, size][0])

    reps = 3
    seconds = {}
    for kind, fn in (("train", step), ("infer", infer)):
        for config in configs:
            fn(*config)  # warm
            seconds[kind, config] = min(timed(lambda: fn(*config)) for _ in range(reps))

    reference = Recorder(lambda: step(8, 64))
    benchmark.pedantic(reference, rounds=5, warmup_rounds=1)

    lines, per_pixel = [], {}
    for kind in ("train", "infer"):
        ref = seconds[kind, (8, 64)] / (8 * 64 * 64)
        parts = []
        for batch, size in configs:
            s = seconds[kind, (batch, size)]
            rel = s / (batch * size * size) / ref
            per_pixel[kind, batch, size] = rel
            parts.append(f"b{batch}@{size}: {s * 1e3:.0f} ms ({rel:.2f})")
            benchmark.extra_info[f"{kind}_b{batch}_s{size}_ms"] = round(s * 1e3, 3)
            benchmark.extra_info[f"{kind}_b{batch}_s{size}_per_pixel_rel"] = round(rel, 4)
        lines.append(f"{kind}: " + ", ".join(parts))
    worst = max(per_pixel["train", 8, 256], per_pixel["infer", 8, 256])
    report("scaling (time, per-pixel time relative to b8@64):\n  " + "\n  ".join(lines),
           per_pixel_256_vs_64_train=per_pixel["train", 8, 256],
           per_pixel_256_vs_64_infer=per_pixel["infer", 8, 256],
           target=2.0, target_met=worst <= 2.0)
    assert worst <= 2.5, f"time per pixel at 256 px is {worst:.1f}x that at 64 px: not linear in pixels"


FILES = 32
FILE_SIZE = (1024, 512)  # half a Cityscapes frame (2:1), decoded down to 64 px


# --- 6b. the ImageNet-pretrained entry's cost against the default model ---------------------

def test_pretrained_entry_vs_unet(benchmark, report, make_unet, data: Split, cpu):
    """A training step of ``unet_effl0_imagenet`` (EfficientNet-Lite0 encoder, 3.3 M parameters)
    against one of ``unet`` (1.05 M), side by side on the same batch (issue 21's cost figure)."""
    images, masks = to_input(data.images[:BATCH]), data.masks[:BATCH]
    unet = make_unet()
    lite = prepare_model(models.build("unet_effl0_imagenet", NUM_CLASSES), cpu)
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (unet, lite)}

    def step(model: torch.nn.Module):
        model.train()
        return train_step(model, optimizers[id(model)], images, masks, cpu)

    rounds = 8
    lite_seconds, unet_seconds = side_by_side(benchmark, lambda: step(lite), lambda: step(unet), rounds)
    ratio = paired_ratio(lite_seconds, unet_seconds)
    report(f"pretrained entry vs unet, one training step at b{BATCH}@64: {statistics.median(lite_seconds) * 1e3:.0f} ms "
           f"vs {statistics.median(unet_seconds) * 1e3:.0f} ms, {ratio:.2f}x "
           f"({BATCH / statistics.median(lite_seconds):.0f} vs {BATCH / statistics.median(unet_seconds):.0f} images/s)",
           ratio=ratio, lite_images_per_s=BATCH / statistics.median(lite_seconds),
           unet_images_per_s=BATCH / statistics.median(unet_seconds))
    assert 1.0 < ratio < 6.0, f"the pretrained entry's step is {ratio:.2f}x unet's"


# --- 7. data loading at scale: streaming, parallel decoding, the decode cache -----------------

def test_streamed_vs_in_memory_training(benchmark, report, make_unet, data: Split, cpu, tmp_path: Path):
    """One epoch over 256 images read by a DataLoader (2 workers) from a memory-mapped ``.npy``
    (the ``--loading stream`` path) vs gathered from tensors in memory. Target >= 0.90."""
    np.save(tmp_path / "images.npy", data.images.numpy())
    np.save(tmp_path / "masks.npy", data.masks.to(torch.uint8).numpy())
    mapped_images = torch.from_numpy(np.load(tmp_path / "images.npy", mmap_mode="c"))
    mapped_masks = torch.from_numpy(np.load(tmp_path / "masks.npy", mmap_mode="c"))
    config = TrainConfig(epochs=1, batch_size=BATCH)
    model = make_unet()
    streamed, memory = side_by_side(
        benchmark, lambda: train(model, mapped_images, mapped_masks, config, cpu, seed=0, desc="stream",
                                 stream=True, workers=2),
        lambda: train(model, data.images, data.masks, config, cpu, seed=0, desc="memory"), rounds=5)
    ratio = paired_ratio(memory, streamed)
    n = len(data)
    report(f"streamed training {n / statistics.median(streamed):.0f} img/s, in memory "
           f"{n / statistics.median(memory):.0f} img/s, ratio {ratio:.2f} (target >= 0.90)",
           streamed_vs_memory=ratio, target=0.9, target_met=ratio >= 0.9)
    assert ratio > 0.5, f"streaming costs {1 / ratio:.1f}x the in-memory epoch"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(FILES):
        image, mask = root / f"{i:03d}.png", root / f"{i:03d}_mask.png"
        Image.fromarray(rng.integers(0, 256, (*FILE_SIZE[::-1], 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 8, FILE_SIZE[::-1], dtype=np.uint8), mode="L").save(mask)
        samples.append(Sample(image, mask))
    return samples


def test_parallel_decoding(benchmark, report, files: list[Sample]):
    """Decoding 32 PNG frames of 1024x512 to 64 px with 2 worker processes vs in-process."""
    serial_config = DatasetConfig(name="bench", image_size=64, workers=0, loading="memory")
    parallel_config = DatasetConfig(name="bench", image_size=64, workers=2, loading="memory")
    parallel, serial = side_by_side(benchmark, lambda: load_split("bench", "train", files, parallel_config, 8),
                                    lambda: load_split("bench", "train", files, serial_config, 8), rounds=3)
    speedup = paired_ratio(serial, parallel)
    report(f"decoding {FILES} frames: 2 workers {FILES / statistics.median(parallel):.0f} files/s, "
           f"in-process {FILES / statistics.median(serial):.0f} files/s, speedup {speedup:.2f}x",
           decode_speedup=speedup)


def test_decode_cache_vs_decoding(benchmark, report, files: list[Sample], tmp_path: Path):
    """Loading a split from the hashed decode cache (hash check included) vs decoding it."""
    config = DatasetConfig(name="bench", image_size=64, workers=0, loading="memory", cache_dir=str(tmp_path))
    load_split("bench", "train", files, config, 8)  # fills the cache
    uncached = DatasetConfig(name="bench", image_size=64, workers=0, loading="memory")
    cached, decoded = side_by_side(benchmark, lambda: load_split("bench", "train", files, config, 8),
                                   lambda: load_split("bench", "train", files, uncached, 8), rounds=5)
    ratio = paired_ratio(cached, decoded)
    report(f"decode cache: {1e3 * statistics.median(cached):.1f} ms to load {FILES} frames, "
           f"{1e3 * statistics.median(decoded):.0f} ms to decode them ({ratio:.3f}x)",
           cache_vs_decode=ratio)
    assert ratio < 0.5


# --- 9. the Ray executor vs the local one ------------------------------------------------------

def test_ray_executor_vs_local(benchmark, report, torch_state: int, tmp_path: Path):
    """The same small grid (one model, one attack, defenses none and pruning: two cells, two
    trainings) from an empty workdir, by the Ray executor on a one-CPU local cluster (tasks
    one at a time, like the local executor) vs the local executor. Ray's cost per cell: shipping
    specs and model bytes, a worker's private workdir, the driver writing the store."""
    ray = pytest.importorskip("ray")
    from benchmark.executor import run_local
    from benchmark.grid import Grid
    from benchmark.ray_executor import RayExecutor

    # one dataset cache for every round, so each process builds the dataset once, as in a long grid
    dataset = DatasetConfig(train_size=128, test_size=32, cache_dir=str(tmp_path / "datasets"))
    grid = Grid(defenses=["none", "pruning"], base=RunSpec(dataset=dataset, train=TrainConfig(epochs=1),
                                                                   device="cpu"))
    workdirs = iter(range(1000))

    def fresh(cells: list[RunSpec]) -> list[RunSpec]:
        workdir = str(tmp_path / str(next(workdirs)))
        return [RunSpec(**{**vars(spec), "workdir": workdir}) for spec in cells]

    ray.init(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(cpus_per_task=torch_state)
        remote, local = side_by_side(benchmark, lambda: list(executor(fresh(grid.cells()))),
                                     lambda: list(run_local(fresh(grid.cells()))), rounds=3)
    finally:
        ray.shutdown()
    cells = len(grid.cells())
    ratio = paired_ratio(remote, local)
    per_cell = statistics.median(r - l for r, l in zip(remote, local)) / cells
    report(f"ray executor: {statistics.median(remote):.1f} s for {cells} cells vs local {statistics.median(local):.1f} s, "
           f"ratio {ratio:.2f}, Ray's overhead {per_cell:.2f} s per cell",
           ray_vs_local=ratio, ray_overhead_s_per_cell=per_cell, cells=cells)
    assert ratio < 3, f"the Ray executor takes {ratio:.1f}x the local one"
