"""Grids: the cross product of models, attacks, poison rates, seeds and defenses, as RunSpecs.

Cells are ordered so that all defenses of one trained model run back to back; the runner's
artifact cache then trains each (dataset, model, attack, poison rate, seed) once and each
clean baseline once per (dataset, model, seed).
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import models
from attacks import Attack
from benchmark.datasets import DatasetConfig
from benchmark.engine import TrainConfig
from benchmark.errors import BenchmarkError
from benchmark.spec import RunSpec
from defenses import Defense


@dataclass
class Grid:
    """What to cross, plus the settings every cell shares."""

    models: list[str] = field(default_factory=lambda: ["unet"])
    attacks: list[str] = field(default_factory=lambda: ["fine_grained"])
    defenses: list[str] = field(default_factory=lambda: ["none"])
    poison_rates: list[float | None] = field(default_factory=lambda: [None])
    seeds: list[int] = field(default_factory=lambda: [0])
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    defense_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    base: RunSpec = field(default_factory=RunSpec)

    def cells(self) -> list[RunSpec]:
        return [
            replace(self.base, model=model, attack=attack, poison_rate=rate, seed=seed, defense=defense,
                    attack_params=dict(self.attack_params.get(attack, {})),
                    defense_params=dict(self.defense_params.get(defense, {})))
            for model, seed, attack, rate, defense in itertools.product(
                self.models, self.seeds, self.attacks, self.poison_rates, self.defenses)
        ]


def split_names(value: str | list[str], registry_names: list[str], kind: str) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` or ``"all"`` -> validated names (unknown ones fail early)."""
    if not isinstance(value, (str, list)) or any(not isinstance(v, str) for v in value):
        raise BenchmarkError(f"setting {kind} (--{kind}) must be a name, a comma-separated list or a list of names, "
                             f"got {value!r}")
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if names == ["all"]:
        return registry_names
    if not names or any(not n for n in names):
        raise BenchmarkError(f"empty {kind} name in {value!r}")
    return names


def split_numbers(value: str | int | float | list, kind: type, flag: str) -> list:
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    if any(isinstance(v, (bool, dict, list)) or (kind is int and isinstance(v, float)) for v in items):
        raise BenchmarkError(f"{flag} expects comma-separated {kind.__name__}s, got {value!r}")
    try:
        return [kind(v) for v in items]
    except (TypeError, ValueError):
        raise BenchmarkError(f"{flag} expects comma-separated {kind.__name__}s, got {value!r}") from None


def read_config(path: str) -> dict[str, Any]:
    """Read a grid TOML file (the same keys as the CLI flags, with lists allowed)."""
    file = Path(path)
    if not file.is_file():
        raise BenchmarkError(f"config file {path!r} does not exist")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as error:
        raise BenchmarkError(f"config file {path!r} is not valid TOML: {error}") from None


CONFIG_KEYS = {
    "model", "attack", "defense", "poison_rate", "seed", "dataset", "data_root", "image_size", "resize", "loading", "workers",
    "train_size", "test_size", "epochs", "batch_size", "lr", "clean_fraction", "device", "workdir", "results", "init_weights",
    "attack_params", "defense_params", "plugins", "executor", "ray_address", "gpus_per_task",
    "cpus_per_task",
    "encoder", "encoder_weights", "crop_size", "optimizer", "momentum", "weight_decay", "aux_weight", "compile",
    "eval_batch_size",
}

INTEGER_KEYS = {"workers", "train_size", "test_size", "epochs", "batch_size", "eval_batch_size", "cpus_per_task"}
NUMBER_KEYS = {"lr", "clean_fraction", "momentum", "weight_decay", "aux_weight", "gpus_per_task"}
TEXT_KEYS = {"dataset", "data_root", "resize", "loading", "device", "workdir", "results", "init_weights",
             "encoder", "encoder_weights", "optimizer", "executor", "ray_address"}
TABLE_KEYS = {"attack_params", "defense_params"}
SIZE_KEYS = {"image_size", "crop_size"}
FLAG_KEYS = {"compile"}
# model, attack, defense, poison_rate, seed take a value or a list (checked where they are split); plugins: plugin_paths


def check_types(settings: dict[str, Any]) -> None:
    """Every setting of the type its key needs: one line naming the key (and its flag) if not.
    TOML values arrive typed; flags arrive already parsed by argparse, so they pass."""
    for key, value in settings.items():
        expected = ("an integer" if key in INTEGER_KEYS and (isinstance(value, bool) or not isinstance(value, int))
                    else "a number" if key in NUMBER_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float)))
                    else "a string" if key in TEXT_KEYS and not isinstance(value, str)
                    else "a table" if key in TABLE_KEYS and not isinstance(value, dict)
                    else "true or false" if key in FLAG_KEYS and not isinstance(value, bool)
                    else None)
        if expected is not None:
            raise BenchmarkError(f"setting {key} (--{key.replace('_', '-')}) must be {expected}, got {value!r}")


def plugin_paths(value: Any) -> list[str]:
    """The ``plugins`` setting: one module or file, or a list of them."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or any(not isinstance(item, str) for item in value):
        raise BenchmarkError(f"setting plugins must be a module or file name, or a list of them, got {value!r}")
    return list(value)


def parse_size(value: Any, key: str) -> tuple[int, int]:
    """``64`` / ``"64"`` (square), ``"512x1024"`` or ``[512, 1024]`` (height, width) -> ``(height, width)``."""
    flag = f"--{key.replace('_', '-')}"
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            sides = [value]
        elif isinstance(value, str):
            sides = [int(side) for side in value.lower().split("x")]
        else:
            sides = [side if isinstance(side, int) and not isinstance(side, bool) else int("bad") for side in value]
        if len(sides) == 1:
            sides *= 2
        height, width = sides
    except (TypeError, ValueError):
        raise BenchmarkError(f"setting {key} ({flag}) must be a side or HEIGHTxWIDTH (e.g. 64 or 512x1024), "
                             f"got {value!r}") from None
    if min(height, width) < 1:
        raise BenchmarkError(f"setting {key} ({flag}) must be positive, got {value!r}")
    return height, width


def encoder_weights(name: str | None) -> str | None:
    """``none`` (so that a flag can undo a config file's weights) means random weights."""
    return None if name is None or name.lower() == "none" else name


def build_grid(settings: dict[str, Any]) -> Grid:
    """A grid from merged settings (TOML values overridden by explicit CLI flags)."""
    unknown = set(settings) - CONFIG_KEYS
    if unknown:
        raise BenchmarkError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(CONFIG_KEYS))}")
    check_types(settings)
    loader = {k: settings[k] for k in ("resize", "loading", "workers") if k in settings}
    dataset = DatasetConfig(
        name=settings.get("dataset", "synthetic"), root=settings.get("data_root"),
        image_size=parse_size(settings.get("image_size", 64), "image_size"),
        train_size=settings.get("train_size"), test_size=settings.get("test_size"), **loader)
    train_defaults = TrainConfig()
    crop = settings.get("crop_size")
    train = TrainConfig(
        epochs=settings.get("epochs", train_defaults.epochs),
        batch_size=settings.get("batch_size", train_defaults.batch_size),
        lr=float(settings.get("lr", train_defaults.lr)),
        weight_decay=float(settings.get("weight_decay", train_defaults.weight_decay)),
        optimizer=settings.get("optimizer", train_defaults.optimizer),
        momentum=float(settings.get("momentum", train_defaults.momentum)),
        aux_weight=float(settings.get("aux_weight", train_defaults.aux_weight)),
        crop_size=None if crop is None else parse_size(crop, "crop_size"),
        compile=settings.get("compile", False))
    base = RunSpec(dataset=dataset, train=train,
                   clean_fraction=float(settings.get("clean_fraction", 0.05)),
                   device=settings.get("device", "auto"), workdir=settings.get("workdir", "runs"),
                   results_dir=settings.get("results"), init_weights=settings.get("init_weights"),
                   encoder=settings.get("encoder"), encoder_weights=encoder_weights(settings.get("encoder_weights")),
                   eval_batch_size=settings.get("eval_batch_size", RunSpec.eval_batch_size))
    attacks = split_names(settings.get("attack", "fine_grained"), Attack.registry.names(), "attack")
    defenses = split_names(settings.get("defense", "none"), Defense.registry.names(), "defense")
    model_names = split_names(settings.get("model", "unet"), models.registry.names(), "model")
    for name in attacks:
        Attack.registry.get(name)
    for name in defenses:
        Defense.registry.get(name)
    for name in model_names:
        models.registry.get(name)
        models.check_encoder(name, base.encoder, base.encoder_weights)
    rates = settings.get("poison_rate")
    return Grid(
        models=model_names, attacks=attacks, defenses=defenses,
        poison_rates=[None] if rates is None else split_numbers(rates, float, "--poison-rate"),
        seeds=split_numbers(settings.get("seed", [0]), int, "--seed"),
        attack_params=per_plugin_params(settings.get("attack_params", {}), attacks),
        defense_params=per_plugin_params(settings.get("defense_params", {}), defenses),
        base=base)


def per_plugin_params(params: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Parameters keyed by plugin name (TOML tables) or shared by all (flat key=value)."""
    nested = {k: v for k, v in params.items() if isinstance(v, dict)}
    shared = {k: v for k, v in params.items() if not isinstance(v, dict)}
    return {name: {**shared, **nested.get(name, {})} for name in names}
