"""Does the loader keep up with the step? Measured while training, said once.

Each training batch carries the CPU seconds its loader worker spent making it
(``vidprism_ds.data.collate.with_cpu_seconds``); the trainer adds how long it waited for each batch and
how long the step took. After a warm-up, if the waits are more than ``WAIT_SHARE_LIMIT`` of the time,
``LoaderPace.check`` returns one warning with what the measured cost means: the loader's CPU per clip,
the clips per second the step takes, so the cores the loader needs at that pace, and what to change
(more workers, up to the cores per GPU, or ``data.decode_device=cuda``, which moves the JPEG decode, the
crop and the resize to the GPU). Nothing is read from the device: the figures are host clocks.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

# batches before measuring: worker start-up, the first (compiling) steps
WARM_UP_BATCHES = 5
# batches measured before judging
MEASURED_BATCHES = 20
# the share of the time spent waiting for batches above which the run is loader-bound
WAIT_SHARE_LIMIT = 0.1


def cores_per_process() -> float:
    """The CPU cores this process may use, shared by the node's training processes (LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores / max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


@dataclass
class LoaderPace:
    workers: int  # data.num_workers
    cores: float  # cores_per_process()
    batches: int = 0
    wait_s: float = 0.0
    step_s: float = 0.0
    cpu_s: float = 0.0
    clips: int = 0
    judged: bool = False

    def add(self, wait_s: float, step_s: float, cpu_s: Optional[float], clips: int) -> None:
        """One micro-batch: the wait for it, its step, its loader CPU seconds (None: not recorded)."""
        self.batches += 1
        if self.batches <= WARM_UP_BATCHES or cpu_s is None:
            return
        self.wait_s, self.step_s, self.cpu_s, self.clips = (self.wait_s + wait_s, self.step_s + step_s,
                                                            self.cpu_s + cpu_s, self.clips + clips)

    def check(self) -> Optional[str]:
        """Once, after the measured batches: a warning when the step waited for data, else None."""
        if self.judged or self.batches < WARM_UP_BATCHES + MEASURED_BATCHES or not self.clips:
            return None
        self.judged = True
        wait_share = self.wait_s / max(self.wait_s + self.step_s, 1e-9)
        if wait_share <= WAIT_SHARE_LIMIT:
            return None
        cpu_per_clip = self.cpu_s / self.clips
        step_rate = self.clips / max(self.step_s, 1e-9)  # clips/s the step would take without waiting
        needed = cpu_per_clip * step_rate  # loader cores at that pace
        return (f"warning: the step waited for batches {wait_share:.0%} of the time: the loader spends "
                f"{1e3 * cpu_per_clip:.0f} ms of CPU a clip and the step takes {step_rate:.1f} clips/s, so keeping up "
                f"needs {needed:.1f} cores per process ({math.ceil(needed)} loader workers); this one has "
                f"{self.workers} worker(s) and {self.cores:g} core(s). Raise data.num_workers (up to the cores "
                f"per process), or set data.decode_device=cuda (JPEG decode, crop and resize on the GPU)")


def timed(batches: Iterable[dict]) -> Iterator[tuple[dict, float]]:
    """Each batch with the seconds the caller waited for it (the time ``next`` took)."""
    source = iter(batches)
    while True:
        started = time.perf_counter()
        batch = next(source, None)
        if batch is None:
            return
        yield batch, time.perf_counter() - started


__all__ = ["LoaderPace", "cores_per_process", "timed"]
