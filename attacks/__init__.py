"""Attacks: subclass :class:`Attack` with a ``name`` to add one (see docs/plugins.md)."""

from attacks.base import Attack
from attacks import fine_grained, image_level  # noqa: F401,E402  (register the built-ins)

registry = Attack.registry

__all__ = ["Attack", "registry"]
