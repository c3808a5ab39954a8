"""The base of attacks and defenses: typed parameters declared as fields, registered by name.

A subclass declares its parameters as annotated class attributes with defaults::

    class MyAttack(Attack):
        name = "my_attack"
        size: int = 6

Every subclass is turned into a keyword-only dataclass, so the fields are its constructor,
``--attack-param size=4`` is parsed against the annotation, and ``python -m benchmark list``
can show them. A subclass with a class attribute ``name`` is registered under it; bases
without one are not.

This module and :mod:`benchmark.toolkit` are the whole harness API a plugin may import
(``docs/plugins.md``): the bases' building blocks live here (``Plugin``, ``Registry``,
``BenchmarkError``, ``NotApplicable``, ``IGNORE_INDEX``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, ClassVar, Mapping

from benchmark.datasets import IGNORE_INDEX
from benchmark.errors import BenchmarkError, NotApplicable
from benchmark.registry import Registry

__all__ = ["IGNORE_INDEX", "BenchmarkError", "NotApplicable", "Plugin", "Registry", "coerce", "parse_key_values"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Plugin:
    """Shared machinery; use :class:`attacks.Attack` or :class:`defenses.Defense`."""

    registry: ClassVar[Registry[type["Plugin"]]]
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(kw_only=True)(cls)
        if "name" in cls.__dict__:
            cls.registry.add(cls.name, cls)

    @classmethod
    def parameters(cls) -> list[dataclasses.Field]:
        """The user-settable parameters (fields not marked as harness context)."""
        return [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("context")]

    @staticmethod
    def context(default: Any = None, default_factory: Any = None) -> Any:
        """A field the harness fills in (e.g. the dataset's class names), not a user parameter."""
        if default_factory is not None:
            return dataclasses.field(default_factory=default_factory, repr=False, metadata={"context": True})
        return dataclasses.field(default=default, repr=False, metadata={"context": True})

    @staticmethod
    def added(default: Any, legacy: Any = dataclasses.MISSING) -> Any:
        """A parameter added to a plugin after results were stored with it. While it holds
        ``legacy`` (the value that reproduces the old behaviour; default: ``default``) it is
        left out of :meth:`key_params`, so cached models and committed cells keep their keys."""
        legacy = default if legacy is dataclasses.MISSING else legacy
        return dataclasses.field(default=default, metadata={"legacy": legacy})

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring, for ``list``."""
        doc = cls.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def parse_params(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Type-check ``raw`` (strings from the CLI or values from TOML) against the fields."""
        fields = {f.name: f for f in cls.parameters()}
        hints = typing.get_type_hints(cls)
        parsed: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                known = ", ".join(fields) or "none"
                raise BenchmarkError(
                    f"{cls.name}: unknown parameter {key!r}{hint} (parameters: {known})"
                )
            parsed[key] = coerce(value, hints[key], f"{cls.name}: parameter {key!r}")
        return parsed

    @classmethod
    def create(cls, raw_params: Mapping[str, Any] | None = None, **context: Any) -> "Plugin":
        """Build an instance from user parameters plus harness context (e.g. class names)."""
        params = cls.parse_params(raw_params or {})
        try:
            return cls(**params, **context)
        except (ValueError, TypeError) as error:
            raise BenchmarkError(f"{cls.name}: {error}") from error

    def params(self) -> dict[str, Any]:
        """The parameter values of this instance, as JSON-friendly data."""
        out = {}
        for f in self.parameters():
            out[f.name] = _json_value(getattr(self, f.name))
        return out

    @classmethod
    def legacy_params(cls) -> dict[str, Any]:
        """The legacy value of each :meth:`added` parameter, stored in every result record so
        that the leaderboard can label older records (which lack the parameter) without
        importing the plugin."""
        return {f.name: _json_value(f.metadata["legacy"]) for f in cls.parameters() if "legacy" in f.metadata}

    def key_params(self) -> dict[str, Any]:
        """The parameters that identify an artifact or a cell: :meth:`params` less the
        :meth:`added` ones that hold their legacy value."""
        params = self.params()
        for f in self.parameters():
            if "legacy" in f.metadata and params[f.name] == _json_value(f.metadata["legacy"]):
                del params[f.name]
        return params


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def coerce(value: Any, annotation: Any, what: str) -> Any:
    """Convert a CLI string or TOML value to ``annotation`` (int, float, bool, str, tuples, unions)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None):
                if value is None or (isinstance(value, str) and value.lower() == "none"):
                    return None
                continue
            try:
                return coerce(value, option, what)
            except BenchmarkError:
                continue
        raise BenchmarkError(f"{what}: cannot read {value!r} as {_type_name(annotation)}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        item_type = args[0] if args else str
        return tuple(coerce(v.strip() if isinstance(v, str) else v, item_type, what) for v in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        return value
    raise BenchmarkError(f"{what}: expected {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, with a clear error for a missing '='."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchmarkError(f"{flag} expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out
