"""The broadened frequency benchmark's verdict: per blink pair, and the order classes, per variant and seed.

``bench/temporal.py --frequency-pairs`` trains on ``vidprism_ds.data.frequency_pairs`` (blink classes
that differ only in the period, then four order/direction classes). The generic tables
(``benchmark_report``) give the blink and the order classes as class groups; this module adds what the
issue asks of it: for each pair of blink classes, each class's accuracy per seed and how often one is
taken for the other, and the target: ``multirate`` gets at least
80% on each class of every pair a burst can resolve, on every seed run, and its mean over the order
classes is at most 3 points below ``segment``'s (means over seeds).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vidprism_ds.analysis.benchmark_report import RunRecord, by_variant
from vidprism_ds.data import frequency_pairs

PAIR_CLASS_TARGET = 0.80
ORDER_MAX_LOSS_POINTS = 3.0


def class_groups() -> dict[str, list[int]]:
    """The blink classes and the order/direction classes (the pairs are read in ``pair_table``)."""
    return {"blink classes": list(range(len(frequency_pairs.BLINK_PERIODS))),
            "order/direction classes": list(frequency_pairs.ORDER_CLASS_IDS)}


def resolvable_pairs(burst_length: int) -> list[int]:
    return [p for p, pair in enumerate(frequency_pairs.PAIRS) if frequency_pairs.burst_resolves(pair, burst_length)]


def pair_table(records: Sequence[RunRecord], burst_length: int) -> list[str]:
    """One row per (variant, pair): each class's accuracy per seed, and the pair's within-pair accuracy
    (clips of the pair predicted as the right one of the two, whatever the other classes got)."""
    lines = ["| variant | pair (periods, frames) | a burst resolves it | short-period class: per seed | "
             "long-period class: per seed | within-pair accuracy: per seed |", "| --- " * 6 + "|"]
    for name, runs in by_variant(records).items():
        for p, pair_name in enumerate(frequency_pairs.PAIR_NAMES):
            short, long = frequency_pairs.pair_class_ids(p)
            per_class = [r.per_class_accuracy() for r in runs]
            within = [_within_pair(r, short, long) for r in runs]
            resolves = "yes" if frequency_pairs.burst_resolves(frequency_pairs.PAIRS[p], burst_length) else "no"
            lines.append(f"| {name} | {pair_name} | {resolves} | {_seeds([a[short] for a in per_class])} | "
                         f"{_seeds([a[long] for a in per_class])} | {_seeds(within)} |")
    return lines


def _within_pair(record: RunRecord, short: int, long: int) -> float:
    conf = record.confusion_cc
    right = conf[short, short] + conf[long, long]
    return float(right / (right + conf[short, long] + conf[long, short])) if right > 0 else 0.0


def _seeds(values: Sequence[float]) -> str:
    return ", ".join("n/a" if not np.isfinite(v) else f"{100 * v:.1f}" for v in values)


def target_lines(records: Sequence[RunRecord], burst_length: int) -> list[str]:
    """The target, checked on the seeds run (both variants must be present)."""
    groups = by_variant(records)
    if "segment" not in groups or "multirate" not in groups:
        return []
    lines = []
    met = True
    for p in resolvable_pairs(burst_length):
        ids = frequency_pairs.pair_class_ids(p)
        worst = min(float(r.per_class_accuracy()[c]) for r in groups["multirate"] for c in ids)
        ok = worst >= PAIR_CLASS_TARGET
        met &= ok
        lines.append(f"- pair {frequency_pairs.PAIR_NAMES[p]}: multirate's lowest class accuracy over its seeds "
                     f"{100 * worst:.1f}% ({'>=' if ok else '<'} {100 * PAIR_CLASS_TARGET:.0f}%)")
    order = frequency_pairs.ORDER_CLASS_IDS
    means = {name: 100 * float(np.mean([r.group_accuracy(order) for r in groups[name]]))
             for name in ("multirate", "segment")}
    difference = means["multirate"] - means["segment"]
    ok = difference >= -ORDER_MAX_LOSS_POINTS
    met &= ok
    lines.append(f"- order/direction classes: multirate {means['multirate']:.1f}% vs segment {means['segment']:.1f}% "
                 f"({difference:+.1f} points; allowed >= -{ORDER_MAX_LOSS_POINTS:.0f})")
    seeds = ", ".join(str(r.seed) for r in groups["multirate"])
    lines.append(f"- target {'met' if met else 'not met'} (multirate seeds {seeds})")
    return lines


def pairs_summary(records: Sequence[RunRecord], burst_length: int) -> str:
    lines = ["#### Per pair (%)", "", *pair_table(records, burst_length)]
    target = target_lines(records, burst_length)
    if target:
        lines += ["", f"#### Target: every class of a burst-resolvable pair >= {100 * PAIR_CLASS_TARGET:.0f}% with "
                      f"multirate, order classes within {ORDER_MAX_LOSS_POINTS:.0f} points of segment", "", *target]
    return "\n".join(lines) + "\n"
