"""A tiny named registry, shared by attacks, defenses, models and datasets (after timm's).

Nothing else in the project keeps a list of plugins: ``list`` and the CLI choices are derived
from the registries, and built-ins register exactly as user plugins do.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
from typing import Any, Callable, Generic, Iterator, TypeVar

from benchmark.errors import BenchmarkError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _origin(obj: Any) -> str:
    """Where an object was defined, for duplicate-name errors."""
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", repr(obj))
    try:
        source = inspect.getsourcefile(obj) or module
    except TypeError:
        source = module
    return f"{module}.{qualname} ({source})"


class Registry(Generic[T]):
    """Maps names to plugins of one kind; entry-point group ``benchmark.<kind>s`` extends it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def add(self, name: str, item: T) -> T:
        existing = self._items.get(name)
        if existing is not None and _origin(existing) != _origin(item):
            raise BenchmarkError(
                f"duplicate {self.kind} name {name!r}: defined by {_origin(existing)} "
                f"and by {_origin(item)}"
            )
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form: ``@models.register("unet")``."""

        def decorate(item: T) -> T:
            return self.add(name, item)

        return decorate

    def get(self, name: str) -> T:
        self.load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise BenchmarkError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self._items[name]

    def __contains__(self, name: str) -> bool:
        self.load_entry_points()
        return name in self._items

    def load_entry_points(self) -> None:
        """Import the plugins installed packages declare under ``benchmark.<kind>s``."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group=f"benchmark.{self.kind}s"):
            try:
                entry_point.load()
            except Exception as error:  # a broken third-party plugin must name itself
                raise BenchmarkError(
                    f"{self.kind} plugin entry point {entry_point.name!r} "
                    f"({entry_point.value}) failed to import: {error}"
                ) from error
