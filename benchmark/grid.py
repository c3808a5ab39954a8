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
from benchmark.runner import RunSpec
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
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if names == ["all"]:
        return registry_names
    if not names or any(not n for n in names):
        raise BenchmarkError(f"empty {kind} name in {value!r}")
    return names


def split_numbers(value: str | list, kind: type, flag: str) -> list:
    items = value.split(",") if isinstance(value, str) else list(value)
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
}


def build_grid(settings: dict[str, Any]) -> Grid:
    """A grid from merged settings (TOML values overridden by explicit CLI flags)."""
    unknown = set(settings) - CONFIG_KEYS
    if unknown:
        raise BenchmarkError(f"unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(CONFIG_KEYS))}")
    loader = {k: settings[k] for k in ("resize", "loading") if k in settings}
    if "workers" in settings:
        loader["workers"] = int(settings["workers"])
    dataset = DatasetConfig(
        name=settings.get("dataset", "synthetic"), root=settings.get("data_root"),
        image_size=int(settings.get("image_size", 64)),
        train_size=settings.get("train_size"), test_size=settings.get("test_size"), **loader)
    train_defaults = TrainConfig()
    train = TrainConfig(
        epochs=int(settings.get("epochs", train_defaults.epochs)),
        batch_size=int(settings.get("batch_size", train_defaults.batch_size)),
        lr=float(settings.get("lr", train_defaults.lr)))
    base = RunSpec(dataset=dataset, train=train,
                   clean_fraction=float(settings.get("clean_fraction", 0.05)),
                   device=settings.get("device", "auto"), workdir=settings.get("workdir", "runs"),
                   results_dir=settings.get("results"), init_weights=settings.get("init_weights"))
    attacks = split_names(settings.get("attack", "fine_grained"), Attack.registry.names(), "attack")
    defenses = split_names(settings.get("defense", "none"), Defense.registry.names(), "defense")
    model_names = split_names(settings.get("model", "unet"), models.registry.names(), "model")
    for name in attacks:
        Attack.registry.get(name)
    for name in defenses:
        Defense.registry.get(name)
    for name in model_names:
        models.registry.get(name)
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
