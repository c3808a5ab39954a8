"""Defenses: subclass one of the five kinds with a ``name`` to add one (see docs/plugins.md)."""

from defenses.base import (CleanBudget, Defense, DetectionDefense, InputFilterDefense,
                           ModelRepairDefense, Predictor)
from defenses import (abl, activation_clustering, anp, beatrix, bit_depth, clp, finetune, fst,  # noqa: F401,E402
                      gaussian, ibau, ibd_psc, jpeg, median, nad, neural_cleanse, none, pruning,
                      scale_up, shrink_pad, spectral, strip, teco)  # (register the built-ins)

from defenses.training import DataFilterDefense, Flags, PoisonedTrainingSet, TrainingDefense  # noqa: E402

registry = Defense.registry

__all__ = ["CleanBudget", "Defense", "DetectionDefense", "InputFilterDefense",
           "ModelRepairDefense", "Predictor", "registry",
           "DataFilterDefense", "Flags", "PoisonedTrainingSet", "TrainingDefense"]
