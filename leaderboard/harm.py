"""The harm-aware numbers of a result record (``benchmark.metrics``, DESIGN section 5).

Records written since these numbers existed carry ``backdoor_removal``, ``miou_cost`` and
``collapsed``; older ones (the committed grid predates them) hold every field they derive
from, so the leaderboard computes them here from the record alone, with the same functions
the runner calls. ``harm_score`` is always computed (it is the rankings' choice, not a
measurement).
"""

from __future__ import annotations

from benchmark import metrics

DERIVED = ("backdoor_removal", "miou_cost", "collapsed", "harm_score")


def backdoor_removal(record: dict) -> float | None:
    if "backdoor_removal" in record:
        return record["backdoor_removal"]
    return metrics.backdoor_removal(record.get("asr"), record.get("post_asr"), record.get("baseline_asr"))


def miou_cost(record: dict) -> float | None:
    if "miou_cost" in record:
        return record["miou_cost"]
    return metrics.miou_cost(record.get("clean_miou"), record.get("post_clean_miou"))


def collapsed(record: dict) -> bool | None:
    if "collapsed" in record:
        return record["collapsed"]
    return metrics.collapsed(record.get("post_clean_miou"), record.get("baseline_clean_miou"))


def harm_score(record: dict) -> float | None:
    return metrics.harm_aware_score(backdoor_removal(record), miou_cost(record), collapsed(record))


def value(record: dict, key: str) -> float | bool | None:
    """``record[key]``, or the derived number when ``key`` is one of :data:`DERIVED`."""
    if key in DERIVED:
        return {"backdoor_removal": backdoor_removal, "miou_cost": miou_cost, "collapsed": collapsed,
                "harm_score": harm_score}[key](record)
    return record.get(key)


def asr_raised(record: dict, points: float = 0.05) -> bool:
    """Whether the defense raised ASR by more than ``points`` (5 points by default)."""
    asr, post = record.get("asr"), record.get("post_asr")
    return asr is not None and post is not None and post - asr > points
