"""Plugins from files, modules and installed packages' entry points."""

import importlib.metadata

import pytest

from attacks import Attack
from benchmark.errors import BenchmarkError
from benchmark.plugins import load_plugin
from benchmark.registry import Registry

PLUGIN = '''
from attacks import Attack

class EntryPointAttack(Attack):
    """An attack shipped by an installed package."""

    name = "{name}"
'''


def test_file_plugin_registers_and_loads_once(tmp_path):
    path = tmp_path / "my_attack.py"
    path.write_text(PLUGIN.format(name="test_file_attack"))
    first = load_plugin(str(path))
    assert load_plugin(str(path)) is first
    assert Attack.registry.get("test_file_attack").summary() == "An attack shipped by an installed package."


def test_broken_plugin_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BenchmarkError, match=r"plugin '.*broken.py' failed to import: RuntimeError: boom"):
        load_plugin(str(path))
    with pytest.raises(BenchmarkError, match="plugin file 'nope.py' does not exist"):
        load_plugin("nope.py")
    with pytest.raises(BenchmarkError, match="plugin 'no_such_module_xyz' failed to import"):
        load_plugin("no_such_module_xyz")


def test_entry_points_of_installed_packages_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "third_party_attacks.py").write_text(PLUGIN.format(name="test_entry_point_attack"))
    monkeypatch.syspath_prepend(str(tmp_path))
    good = importlib.metadata.EntryPoint("mine", "third_party_attacks", "benchmark.attacks")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [good] if group == "benchmark.attacks" else [])
    registry = Registry("attack")
    registry.load_entry_points()
    assert "test_entry_point_attack" in Attack.registry


def test_broken_entry_point_names_itself(monkeypatch):
    bad = importlib.metadata.EntryPoint("bad", "no_such_package_xyz", "benchmark.defenses")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [bad])
    with pytest.raises(BenchmarkError, match="defense plugin entry point 'bad' \\(no_such_package_xyz\\) failed"):
        Registry("defense").load_entry_points()
