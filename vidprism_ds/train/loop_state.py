"""What ``Trainer.fit`` returns (``RunResult``) and what it carries from one step to the next (``LoopState``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist

from vidprism_ds.data.damage import DamageLog
from vidprism_ds.train.signals import StopRequest
from vidprism_ds.train.step_log import GlobalBatchLoss, StepLossLog


@dataclass
class RunResult:
    history: list[dict] = field(default_factory=list)  # one entry per optimizer step: step, loss terms, lr
    eval_metrics: Optional[dict] = None
    expert_weights: Optional[list[float]] = None  # mean readout weight per expert over the last eval
    output_dir: Optional[Path] = None
    step: int = 0
    stopped_by_signal: bool = False
    resumed_from: Optional[int] = None


class EpochDamage:
    """This rank's damaged samples in the epoch: those the loader workers skipped (each batch carries how
    many it stands in for) and the clips device decode replaced (``decode_log``: counted against
    ``data.max_bad_samples`` on this rank). ``total`` sums them over the data-parallel ranks."""

    def __init__(self, limit: int):
        self.limit = limit
        self.start()

    def start(self) -> None:
        self.count = 0
        self.decode_log = DamageLog(self.limit, "training", action="replaced", where="on this rank")

    def add(self, batch: dict) -> None:
        self.count += batch.get("damaged", 0)  # a host int: no device sync

    def total(self, device: torch.device, dp_size: int, group=None) -> torch.Tensor:
        """The sum over the data-parallel ranks, as a scalar on ``device``: it is read back with the step's
        loss terms (``StepLossLog``), not on its own (a fill, not a host copy: no sync)."""
        count = torch.full((), float(self.count), dtype=torch.float64, device=device)
        if dp_size > 1:
            dist.all_reduce(count, group=group)
        return count


# what ``Trainer.after_step`` tells the loop (None: carry on)
STOPPED = "stopped"  # a stop signal was agreed: checkpoint saved, the run returns
FINISHED = "finished"  # train.max_steps reached: checkpoint saved, the epoch loop ends


@dataclass
class LoopState:
    """Where ``fit`` is, and what it carries between steps."""

    result: RunResult
    stop: StopRequest
    on_step: Optional[Callable[[int], None]]
    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0  # micro-batches of the epoch consumed on this rank
    pending: StepLossLog = field(default_factory=StepLossLog)
    step_loss: GlobalBatchLoss = field(default_factory=GlobalBatchLoss)  # the current step's micro-batches
    window_start: float = field(default_factory=time.perf_counter)  # throughput since the last logged step
    window_clips: int = 0
