"""The default process group, started from whatever launcher started this process (a plain process is a
world of one), and rank-zero-first for work whose result the other ranks read from a cache."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import deepspeed
import torch
import torch.distributed as dist

from vidprism_ds.train.launch import export_launch_env, resolve_launch
from vidprism_ds.train.library_output import dropping_stdout_lines

Value = TypeVar("Value")


def init_distributed() -> tuple[int, int, torch.device]:
    """Initialise the default process group from the launcher's environment (once per process)."""
    if not dist.is_initialized():
        info = resolve_launch(os.environ)
        export_launch_env(info)
        if torch.cuda.is_available():
            # before the group exists: NCCL binds its communicator (and barrier()) to the current device,
            # and otherwise guesses it from the global rank (seen on the H200 run: "Guessing device ID")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        with dropping_stdout_lines():  # DeepSpeed prints that its CPU collectives loaded (library_output.py)
            deepspeed.init_distributed(dist_backend=backend, verbose=False)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def rank_zero_first(rank: int, fn: Callable[[], Value]) -> Value:
    """Run ``fn`` on rank 0, then on the others (they find its cache)."""
    if rank == 0:
        value = fn()
        dist.barrier()
    else:
        dist.barrier()
        value = fn()
    return value
