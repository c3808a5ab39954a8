"""Defenses: subclass one of the three kinds with a ``name`` to add one (see docs/plugins.md)."""

from defenses.base import (CleanBudget, Defense, DetectionDefense, InputFilterDefense,
                           ModelRepairDefense, Predictor)
from defenses import (anp, bit_depth, clp, finetune, fst, gaussian, ibau, jpeg, median, nad,  # noqa: F401,E402
                      neural_cleanse, none, pruning, shrink_pad, strip)  # (register the built-ins)

registry = Defense.registry

__all__ = ["CleanBudget", "Defense", "DetectionDefense", "InputFilterDefense",
           "ModelRepairDefense", "Predictor", "registry"]
