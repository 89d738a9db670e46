"""Run a function in N fresh processes joined by a gloo process group (DeepSpeed's communicator).

``run_workers("tests.parallel.workers:fn", world_size, **kwargs)`` calls ``fn(**kwargs)`` on every rank
and returns the ranks' return values in rank order. A worker that raises fails the test with its
traceback; one that hangs is killed after ``timeout`` seconds.

The processes are forked from a fork server (``multiprocessing``'s "forkserver" start method) that has
imported torch, DeepSpeed, megatron-core, open_clip and the project once: each starts like a freshly
spawned interpreter (its own memory, no process group, the test's environment and folder) without paying
the ~11 s of CPU those imports cost, which made most of a short multi-rank test's time on 2 cores.
"""

from __future__ import annotations

import importlib
import io
import os
import socket
import time
import traceback

import queue

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Imported once by the fork server, so that each worker starts with them loaded (about 11 s of CPU
# a process otherwise, the larger part of a short test's time on 2 cores).
PRELOADED_MODULES = ["torch", "deepspeed", "megatron.core.parallel_state", "open_clip",
                     "vidprism_ds.train.run", "tests.train.workers", "tests.parallel.workers"]


def _context():
    """Workers fork from a clean server process that has only imported ``PRELOADED_MODULES``: a fork of the
    test process itself would inherit whatever earlier in-process tests left behind (a process group,
    megatron's parallel state, OpenMP threads)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOADED_MODULES)
    return ctx


def _entry(rank: int, world_size: int, port: int, target: str, kwargs: dict, results, environ: dict,
           cwd: str) -> None:
    # the fork server's environment and folder are the ones it started with: take the test's, as a
    # spawned process would
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    try:
        import deepspeed
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        deepspeed.init_distributed(dist_backend="gloo", verbose=False)
        module_name, fn_name = target.split(":")
        value = getattr(importlib.import_module(module_name), fn_name)(**kwargs)
        # As bytes: tensors sent through a queue are shared-memory handles that die with this process.
        buffer = io.BytesIO()
        torch.save(value, buffer)
        results.put((rank, "ok", buffer.getvalue()))
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:  # reported to the parent, which fails the test with this traceback
        results.put((rank, "error", traceback.format_exc()))


def run_workers(target: str, world_size: int, timeout: float = 300, **kwargs) -> list:
    ctx = _context()
    results = ctx.Queue()
    port = free_port()
    args = (world_size, port, target, kwargs, results, dict(os.environ), os.getcwd())
    procs = [ctx.Process(target=_entry, args=(r, *args), daemon=True) for r in range(world_size)]
    for p in procs:
        p.start()
    collected: dict[int, object] = {}
    errors = []
    try:
        deadline = time.monotonic() + timeout
        while len(collected) < world_size and not errors:
            try:
                rank, status, value = results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in collected]
                if dead:
                    errors.append(f"ranks {dead} died without reporting (exit codes "
                                  f"{[procs[r].exitcode for r in dead]})")
                elif time.monotonic() > deadline:
                    errors.append(f"workers did not finish within {timeout} s (hung collective?)")
                continue
            if status == "error":
                errors.append(f"rank {rank}:\n{value}")
            else:
                collected[rank] = torch.load(io.BytesIO(value), weights_only=False)
    finally:
        for p in procs:
            p.join(timeout=30 if not errors else 1)
            if p.is_alive():
                p.kill()
    if errors:
        raise AssertionError("\n".join(errors))
    return [collected[r] for r in range(world_size)]
