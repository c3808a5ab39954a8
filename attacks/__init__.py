"""Attacks: subclass :class:`Attack` with a ``name`` to add one (see docs/plugins.md).

The built-ins are combinations of the parts in :mod:`attacks.parts` (trigger, placement,
label rule, selection); ``python -m benchmark list`` shows each one's choice per axis.
"""

from attacks.base import Attack
from attacks import adaptive, badseg, fine_grained, iba, image_level, invisible  # noqa: F401,E402  (register the built-ins)

registry = Attack.registry

__all__ = ["Attack", "registry"]
