"""Defenses: subclass one of the five kinds with a ``name`` to add one (see docs/plugins.md)."""

from defenses.base import (CleanBudget, Defense, DetectionDefense, InputFilterDefense,
                           ModelRepairDefense, Predictor)
from defenses import bit_depth, gaussian, jpeg, median, none, pruning, shrink_pad, strip  # noqa: F401,E402  (register the built-ins)
from defenses import abl, activation_clustering, beatrix, ibd_psc, scale_up, spectral, teco  # noqa: F401,E402

from defenses.training import DataFilterDefense, Flags, PoisonedTrainingSet, TrainingDefense  # noqa: E402

registry = Defense.registry

__all__ = ["CleanBudget", "Defense", "DetectionDefense", "InputFilterDefense",
           "ModelRepairDefense", "Predictor", "registry",
           "DataFilterDefense", "Flags", "PoisonedTrainingSet", "TrainingDefense"]
