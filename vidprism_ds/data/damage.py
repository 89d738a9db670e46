"""Damaged samples: what the shard loaders do with a sample that cannot be used.

A truncated tar, a corrupt JPEG, a ``json``/``cls`` member that does not parse or a label outside the
model's classes must neither end a long run nor reach the model. The stage that meets the problem
replaces the sample by a *damage marker* (``damage_marker``: shard, key, global index, reason) and passes
it on; every later stage passes markers through untouched, and one stage at the end of the pipeline
hands them to the epoch's ``DamageLog``:

- training from shards (``train_source.replace_damaged``) replaces each by the first usable sample after it
  in its shuffle block, so the global order and every batch stay the same on every topology; the
  raw-video loader (``skip_damaged``) drops them *before* ``sample_filters.take_worker_share``, so every
  worker still gives its fixed number of full batches and no rank waits on another;
- evaluation (``invalidate_damaged``) turns each into an invalid sample (``valid`` False, label 0, the
  sample's own index): the worker's sample count, hence every rank's batch count, stays what the plan
  says, and the metrics leave the sample out (the warning says so).

``DamageLog`` logs one warning per marker and counts the samples; more than ``data.max_bad_samples``
in one epoch on one loader worker raises ``TooManyDamagedSamples`` naming the last one: by then the data
set is broken, not a sample of it. A fresh log is made with each epoch's pipeline, and each DataLoader
worker works on its own copy, hence "per epoch and worker".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

logger = logging.getLogger(__name__)

DAMAGE = "__damage__"  # the reason, in a marker
LOST = "__lost__"  # how many samples a marker stands for (> 1 when a shard ends early)
DAMAGED = "damaged"  # in a sample and its batch: damaged samples it stands in for (the trainer logs their sum)


class DamagedSample(Exception):
    """One sample's problem, raised by the per-sample helpers; the calling stage turns it into a marker."""


class TooManyDamagedSamples(RuntimeError):
    """More damaged samples than ``data.max_bad_samples`` in one epoch on one loader worker."""


def damage_marker(sample: dict, reason: str, lost: int = 1) -> dict:
    marker = {"__key__": sample.get("__key__"), "__url__": sample.get("__url__"),
              "__index__": sample.get("__index__", -1), DAMAGE: reason, LOST: lost}
    if "__position__" in sample:  # training: the epoch position the replacement fills
        marker["__position__"] = sample["__position__"]
    return marker


def is_damaged(sample: dict) -> bool:
    return DAMAGE in sample


def describe(marker: dict) -> str:
    """'shard PATH, key KEY: REASON' (the key is left out when the damage is not one sample's)."""
    key = f", key {marker['__key__']}" if marker.get("__key__") is not None else ""
    count = f" ({marker[LOST]} samples)" if marker.get(LOST, 1) > 1 else ""
    return f"shard {marker['__url__']}{key}{count}: {marker[DAMAGE]}"


@dataclass
class DamageLog:
    limit: int  # data.max_bad_samples; 0 = stop at the first damaged sample
    purpose: str  # "training" or "evaluation", for the messages
    count: int = 0
    # what happens to the sample, and whose count this is (device decode: "replaced", "on this rank")
    action: str = ""
    where: str = "on one loader worker"

    def record(self, marker: dict, action: str = "") -> None:
        """Log and count one marker; ``action`` says what became of it (default: this log's)."""
        self.count += marker.get(LOST, 1)
        action = action or self.action or ("skipped" if self.purpose == "training"
                                           else "counted as invalid (left out of the metrics)")
        logger.warning("%s: damaged sample %s: %s [%d this epoch %s, data.max_bad_samples=%d]",
                       self.purpose, action, describe(marker), self.count, self.where, self.limit)
        if self.count > self.limit:
            raise TooManyDamagedSamples(
                f"{self.purpose}: {self.count} damaged samples in this epoch {self.where}, more than "
                f"data.max_bad_samples={self.limit}; the last: {describe(marker)}")


def skip_damaged(samples: Iterator[dict], damage: DamageLog) -> Iterator[dict]:
    """Training: log and drop markers (counted against ``data.max_bad_samples``). The next sample carries
    how many were dropped before it (``DAMAGED``), so the batches add up to the epoch's count."""
    dropped = 0
    for sample in samples:
        if is_damaged(sample):
            damage.record(sample)
            dropped += sample.get(LOST, 1)
            continue
        if dropped:
            sample = {**sample, DAMAGED: dropped}
            dropped = 0
        yield sample
