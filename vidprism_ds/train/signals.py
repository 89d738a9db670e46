"""Pre-emption: SIGUSR1 (SLURM's warning before the time limit) and SIGTERM ask for a clean stop.

The handler only sets a flag; the loop checks it at step boundaries, agrees on it across ranks (a
signal may reach only some tasks), saves a checkpoint and exits with ``EXIT_REQUEUE``.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

# "A checkpoint was saved; start me again to continue." The SLURM scripts requeue on it.
EXIT_REQUEUE = 3


class StopRequest:
    def __init__(self, signals=(signal.SIGUSR1, signal.SIGTERM)):
        self.signum = 0
        self._previous = {}
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def agreed(self, world_size: int, device: torch.device) -> bool:
        """True on every rank if any rank was signalled (collective)."""
        flag = torch.tensor([1.0 if self.signum else 0.0], device=device)
        if world_size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
