"""Which launcher started us, and the torch.distributed environment it implies.

``deepspeed`` and ``torchrun`` export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
``srun`` exports SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the node list; a plain ``python``
process has none of them and runs as a world of one. ``resolve_launch`` turns any of these into one
``LaunchInfo`` (pure: takes the environment as a mapping), ``export_launch_env`` writes the torch
variables so ``deepspeed.init_distributed`` finds them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Callable, Mapping, Optional


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class LaunchInfo:
    launcher: str  # "torch" (deepspeed / torchrun), "slurm" or "single"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int


def slurm_port(job_id: str) -> int:
    """A port derived from the job id: tasks of one job agree on it without talking; jobs sharing a
    node rarely collide. Range 15000-34999 avoids the ephemeral range most kernels use (32768+) mostly
    and the well-known ports entirely."""
    return 15000 + int(re.sub(r"\D", "", job_id) or 0) % 20000


def first_host(nodelist: str, scontrol: Optional[Callable[[str], str]] = None) -> str:
    """First host of a SLURM node list ("node[01-04,07]", "a,b", "gpu-1")."""
    if scontrol is not None:
        hosts = scontrol(nodelist).split()
        if hosts:
            return hosts[0]
    head = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if head is None:
        raise LaunchError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(3)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def _scontrol_hostnames(nodelist: str) -> str:
    if shutil.which("scontrol") is None:
        return ""
    done = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
    return done.stdout if done.returncode == 0 else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise LaunchError(f"environment variable {key}={env[key]!r} is not an integer") from None


def resolve_launch(env: Mapping[str, str], scontrol: Optional[Callable[[str], str]] = _scontrol_hostnames) -> LaunchInfo:
    if "RANK" in env and "WORLD_SIZE" in env:
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in env:
                raise LaunchError(f"RANK and WORLD_SIZE are set but {key} is not: incomplete launcher environment")
        world = _int(env, "WORLD_SIZE")
        return LaunchInfo("torch", _int(env, "RANK"), world, _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                          _int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else world,
                          env["MASTER_ADDR"], _int(env, "MASTER_PORT"))
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if not nodelist:
            raise LaunchError("running under srun but SLURM_JOB_NODELIST is not set")
        addr = env.get("MASTER_ADDR") or first_host(nodelist, scontrol)
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else slurm_port(env.get("SLURM_JOB_ID", "0"))
        world = _int(env, "SLURM_NTASKS")
        tasks_per_node = env.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
        local_world = int(tasks_per_node) if tasks_per_node.isdigit() else world
        return LaunchInfo("slurm", _int(env, "SLURM_PROCID"), world, _int(env, "SLURM_LOCALID"), local_world,
                          addr, port)
    return LaunchInfo("single", 0, 1, 0, 1, env.get("MASTER_ADDR", "127.0.0.1"),
                      _int(env, "MASTER_PORT") if "MASTER_PORT" in env else _free_port())


def export_launch_env(info: LaunchInfo, environ: Optional[dict] = None) -> None:
    environ = os.environ if environ is None else environ
    environ.update(RANK=str(info.rank), WORLD_SIZE=str(info.world_size), LOCAL_RANK=str(info.local_rank),
                   LOCAL_WORLD_SIZE=str(info.local_world_size), MASTER_ADDR=info.master_addr,
                   MASTER_PORT=str(info.master_port))
