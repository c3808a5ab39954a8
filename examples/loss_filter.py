"""``low_loss_filter``: flag the training segments the trained model fits suspiciously well.

An example poisoned-data detection defense. ``flag`` gets the poisoned training set exactly as
the victim received it and the model trained on it, and returns a score (higher = more
suspicious) and a decision per *segment*, ``[N, K]``: the pixels of class k in image n (or per
image, ``[N]``). Poisoned segments are learned faster than clean ones (the observation behind
ABL), so the score is the negated mean loss and the ``fraction`` lowest-loss segments are
flagged. The harness sets them to ignore, retrains and scores the flags.
"""

from torch import nn

from defenses import DataFilterDefense, Flags, PoisonedTrainingSet
from defenses.training import segment_losses


class LowLossFilter(DataFilterDefense):
    """Flag the training segments with the lowest loss under the trained model."""

    name = "low_loss_filter"

    fraction: float = 0.05
    """Fraction of the segments flagged."""

    def flag(self, model: nn.Module, data: PoisonedTrainingSet) -> Flags:
        scores = -segment_losses(model, data)  # [N, K]; NaN where image n has no class k
        present = ~scores.isnan()
        count = max(1, round(self.fraction * int(present.sum())))
        threshold = scores[present].topk(count).values.min()
        return Flags(scores, present & (scores >= threshold))
