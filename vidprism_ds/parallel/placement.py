"""Where each expert lives: a load-balanced placement of heterogeneous experts on expert-parallel ranks.

VidPrism's experts share an architecture but not their work: the expert of rate r reads T/r tokens per
clip, so the fastest stream costs many times the slowest (attention is quadratic in length). DeepSpeed's
MoE layer places experts contiguously (rank k owns experts k*L .. k*L+L-1), which here would put all the
fast experts on the first ranks. Instead each rank receives the same number of experts (DeepSpeed's
``num_local_experts`` convention, and equal parameter memory) chosen to balance estimated FLOPs:
longest-processing-time-first greedy under a per-rank count limit. Deterministic, so every rank computes
the same placement without communicating.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidprism_ds.config.validation import check_ep_size


@dataclass(frozen=True)
class ExpertPlacement:
    ep_size: int
    owner: tuple[int, ...]  # owner[e] = EP rank holding global expert e

    @property
    def num_experts(self) -> int:
        return len(self.owner)

    @property
    def num_local_experts(self) -> int:
        return self.num_experts // self.ep_size

    def local_experts(self, ep_rank: int) -> list[int]:
        """Global ids held by ``ep_rank``, ascending: their order is the rank's slot order."""
        return [e for e, owner in enumerate(self.owner) if owner == ep_rank]

    def load(self, costs: list[float]) -> list[float]:
        per_rank = [0.0] * self.ep_size
        for e, owner in enumerate(self.owner):
            per_rank[owner] += costs[e]
        return per_rank


def place_experts(costs: list[float], ep_size: int) -> ExpertPlacement:
    num_experts = len(costs)
    check_ep_size(ep_size, num_experts)
    per_rank_limit = num_experts // ep_size
    load = [0.0] * ep_size
    count = [0] * ep_size
    owner = [0] * num_experts
    # Heaviest first; ties broken by expert id so the result never depends on sort stability.
    for e in sorted(range(num_experts), key=lambda i: (-costs[i], i)):
        candidates = [k for k in range(ep_size) if count[k] < per_rank_limit]
        target = min(candidates, key=lambda k: (load[k], k))
        owner[e] = target
        load[target] += costs[e]
        count[target] += 1
    return ExpertPlacement(ep_size=ep_size, owner=tuple(owner))
