"""What ``Trainer.fit`` returns (``RunResult``) and what it carries from one step to the next (``LoopState``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vidprism_ds.train.signals import StopRequest
from vidprism_ds.train.step_log import StepLossLog


@dataclass
class RunResult:
    history: list[dict] = field(default_factory=list)  # one entry per optimizer step: step, loss terms, lr
    eval_metrics: Optional[dict] = None
    expert_weights: Optional[list[float]] = None  # mean readout weight per expert over the last eval
    output_dir: Optional[Path] = None
    step: int = 0
    stopped_by_signal: bool = False
    resumed_from: Optional[int] = None


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
    window_start: float = field(default_factory=time.perf_counter)  # throughput since the last logged step
    window_clips: int = 0
