"""The next committed grid (issue 25), defined before it is run: five seeds of every registered
attack x every registered defense on the default model, three seeds of the other models'
headline cells and of the poison-rate sweep, all at the converged training configuration."""

from collections import defaultdict
from functools import cache
from pathlib import Path

from attacks import Attack
from benchmark.grid import build_grid, read_config
from defenses import Defense

SHARDS = sorted((Path(__file__).parents[2] / "leaderboard" / "shards-v3").glob("seed*/*.toml"))


def built_in(base: type) -> set[str]:
    """The registered names shipped with the project (other tests register plugins of their own)."""
    registry = base.registry
    return {n for n in registry.names() if registry.get(n).__module__.split(".")[0] in ("attacks", "defenses")}


@cache
def shard_cells(shard: Path) -> tuple:
    return tuple(build_grid(read_config(str(shard))).cells())


def cells() -> list:
    return [spec for shard in SHARDS for spec in shard_cells(shard)]


def test_every_registered_attack_and_defense_has_five_seeds_on_the_default_model():
    seeds = defaultdict(set)
    for s in cells():
        if s.model == "unet" and s.poison_rate == 0.1:
            seeds[s.attack, s.defense].add(s.seed)
    assert set(seeds) == {(a, d) for a in built_in(Attack) for d in built_in(Defense)}
    assert {frozenset(v) for v in seeds.values()} == {frozenset(range(5))}


def test_the_other_models_and_the_poison_rate_sweep_have_three_seeds():
    others, rates = defaultdict(set), defaultdict(set)
    for s in cells():
        if s.model != "unet":
            others[s.model, s.attack, s.defense].add(s.seed)
        elif s.defense == "none":
            rates[s.attack, s.poison_rate].add(s.seed)
    assert {m for m, _, _ in others} == {"fpn", "pspnet", "deeplabv3plus", "unet_effl0_imagenet"}
    assert all(len(v) == 3 for v in others.values())
    assert {r for _, r in rates} == {0.01, 0.02, 0.05, 0.1} and all(len(v) >= 3 for v in rates.values())


def test_one_training_configuration_and_no_legacy_defense_parameters():
    specs = cells()
    assert {(s.dataset.train_size, s.dataset.test_size, s.train.epochs) for s in specs} == {(1000, 150, 15)}
    assert all(not s.defense_params for s in specs)


def test_each_shard_is_one_seed_of_at_most_two_defended_attacks():
    """The cut that keeps a shard under 45 minutes here (docs/leaderboard.md has the times);
    undefended trainings (the poison-rate sweep) are cheap enough to take three attacks."""
    for shard in SHARDS:
        specs = shard_cells(shard)
        assert len({s.seed for s in specs}) == 1, shard
        assert len({s.attack for s in specs}) <= 2 or {s.defense for s in specs} == {"none"}, shard
