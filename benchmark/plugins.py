"""Loading user plugins: ``--plugin MODULE_OR_FILE.py`` and installed entry points.

Importing a plugin module is all it takes: its ``Attack`` / ``Defense`` subclasses with a
``name`` and its ``@models.register`` / ``@datasets.register`` functions register themselves.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import models
from attacks import Attack
from benchmark import datasets
from benchmark.errors import BenchmarkError
from defenses import Defense

log = logging.getLogger(__name__)


def load_plugin(name: str) -> ModuleType:
    """Import a module by dotted name, or a ``.py`` file by path (each file imported once)."""
    path = Path(name)
    try:
        if name.endswith(".py") or path.is_file():
            if not path.is_file():
                raise BenchmarkError(f"plugin file {name!r} does not exist")
            resolved = path.resolve()
            module_name = f"benchmark_plugin_{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
            if module_name in sys.modules:
                return sys.modules[module_name]
            spec = importlib.util.spec_from_file_location(module_name, resolved)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        else:
            module = importlib.import_module(name)
    except BenchmarkError as error:
        raise BenchmarkError(f"plugin {name!r}: {error}") from error
    except Exception as error:
        raise BenchmarkError(f"plugin {name!r} failed to import: {type(error).__name__}: {error}") from error
    log.info("loaded plugin %s", name)
    return module


def load_plugins(names: list[str]) -> None:
    """Import ``--plugin`` modules, then every installed entry-point plugin."""
    for name in names:
        load_plugin(name)
    for registry in (Attack.registry, Defense.registry, models.registry, datasets.registry):
        registry.load_entry_points()
