"""``line_all_to_all``: the seed paper's black top line as trigger, WABA's all-to-all label rule.

An example attack built only from existing parts (``attacks.parts``): a trigger and a label
rule, plus the attack region the rule implies. ``axes`` is what ``list`` shows for it.
Run it with ``--plugin examples/line_attack.py --attack line_all_to_all``.
"""

from attacks import Attack
from attacks.parts import labels, triggers
from benchmark.plugin import IGNORE_INDEX


class LineAllToAll(Attack):
    """A black line across the top rows turns every class c into c + 1 mod C."""

    name = "line_all_to_all"
    axes = {"trigger": "top line", "placement": "top rows", "label rule": "all-to-all: c -> c+1 mod C",
            "selection": "any image"}

    def apply_trigger(self, images, masks):
        return triggers.top_line(images, rows=self.trigger_size, alpha=self.trigger_alpha)

    def poison_label(self, masks):
        return labels.all_to_all(masks, len(self.class_names))

    def attack_region(self, masks):
        return masks != IGNORE_INDEX
