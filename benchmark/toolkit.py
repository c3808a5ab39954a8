"""The toolkit of the public plugin API: what an attack or defense may call of the harness.

Attacks and defenses import from the harness only :mod:`benchmark.plugin` (the bases'
building blocks: ``Plugin``, ``Registry``, ``BenchmarkError``, ``IGNORE_INDEX``) and this
module (the model's arithmetic and the metrics a defense may compute on its clean budget).
``docs/plugins.md`` lists both; ``tests/test_plugin_api.py`` fails when a plugin reaches for
anything else, so the engine, the runner and the store can change without breaking plugins.
"""

from benchmark.engine import (TrainConfig, autocast, batch_indices, logits_of, one_cycle, prepare_model,
                              to_input, train, train_step)
from benchmark.metrics import auroc, confusion_matrix, mean_iou, per_class_iou, threshold_at_fpr

__all__ = [
    "TrainConfig", "autocast", "batch_indices", "logits_of", "one_cycle", "prepare_model", "to_input",
    "train", "train_step",
    "auroc", "confusion_matrix", "mean_iou", "per_class_iou", "threshold_at_fpr",
]
