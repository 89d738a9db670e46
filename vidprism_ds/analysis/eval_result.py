"""What an evaluation measured (``EvalResult``) and how its top-k accuracies are written as text.

``vidprism_ds.train.evaluate`` computes an ``EvalResult`` (counts reduced over ranks); the trainer's
console line, the demo's table and ``vidprism_ds.analysis.eval_report`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

# The k of every top-k accuracy an evaluation counts and reports (where k is below the number of classes).
TOP_K = (1, 5)


def reported_top_k(num_classes: int) -> tuple[int, ...]:
    """The k whose top-k accuracy says something about the model: k below the number of classes. With k
    classes or fewer every video's class is among the top k, and top-k is 1.0 whatever the model does."""
    return tuple(k for k in TOP_K if k < num_classes)


def top_k_text(accuracy_by_k: Mapping[int, float], num_classes: int, digits: int = 4, sep: str = " ") -> str:
    """``top-1 0.7500 top-5 0.9500``, leaving out the k that ``reported_top_k`` leaves out."""
    return sep.join(f"top-{k} {accuracy_by_k[k]:.{digits}f}" for k in reported_top_k(num_classes))


@dataclass
class EvalResult:
    accuracy_by_k: dict[int, float]  # every k of TOP_K
    samples: int
    per_class_accuracy: list[float] = field(default_factory=list)
    confusion: Optional[torch.Tensor] = None  # (C, C) counts, row = true class
    damaged_samples: int = 0  # left out of the counts: damaged in the shards (vidprism_ds.data.damage)

    @property
    def top1(self) -> float:
        return self.accuracy_by_k[1]

    @property
    def top5(self) -> float:
        return self.accuracy_by_k[5]

    def as_dict(self) -> dict:
        return {**{f"top{k}": self.accuracy_by_k[k] for k in TOP_K}, "samples": self.samples,
                "damaged_samples": self.damaged_samples}

    @property
    def num_classes(self) -> int:
        return len(self.per_class_accuracy)
