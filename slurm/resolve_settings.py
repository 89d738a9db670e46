"""Resolve train.py's arguments the way train.py will and print where a SLURM job reads and writes.

Called by the slurm/*.sh scripts before ``srun`` with the exact train.py arguments:
``python slurm/resolve_settings.py [--require init|train|val ...] -- TRAIN.PY ARGUMENTS``. Human-readable
settings go to stderr (the job log); stdout carries ``VP_OUTPUT_DIR=...`` for the script to ``eval``.
Exit 2 with train.py's one-line message on a bad config, or when a required input is missing, so a
mistake fails in seconds instead of after the step has started on every node.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence, TextIO


def _describe_shards(path: str) -> tuple[bool, str]:
    from vidprism_ds.data.manifest import load_manifest

    if not path:
        return False, "(not set)"
    try:
        manifest = load_manifest(path)
    except (FileNotFoundError, ValueError) as err:
        return False, f"{path}  MISSING: {err}"
    return True, f"{path}  ({manifest.num_samples} samples in {len(manifest.shards)} shards)"


def tasks_per_node(environ: Mapping[str, str]) -> list[int]:
    """The task counts of the job's nodes, from Slurm's compressed SLURM_TASKS_PER_NODE ("8(x4)", "8(x2),4")
    or else SLURM_NTASKS_PER_NODE; empty outside a job."""
    text = environ.get("SLURM_TASKS_PER_NODE") or environ.get("SLURM_NTASKS_PER_NODE") or ""
    counts = []
    for group in filter(None, text.split(",")):
        count, _, repeat = group.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts


def tensor_parallel_placement_problem(tp_size: int, node_tasks: Sequence[int]) -> Optional[str]:
    """Why ``tp_size`` would put a tensor-parallel group across nodes, or None. The groups are ``tp_size``
    consecutive ranks (megatron-core's layout) and srun numbers the ranks node by node, so a group stays
    inside a node exactly when ``tp_size`` divides every node's task count."""
    straddling = sorted({count for count in node_tasks if count % tp_size})
    if tp_size == 1 or not straddling:
        return None
    divisors = [d for d in range(1, min(node_tasks) + 1) if all(count % d == 0 for count in node_tasks)]
    return (f"parallel.tp_size: {tp_size} does not divide the {straddling[0]} tasks (GPUs) of a node: tensor-parallel "
            f"groups of {tp_size} consecutive ranks would span two nodes (their all-reduces then leave NVLink); set "
            f"TP_SIZE to one of {divisors}, or run {tp_size} or a multiple of it tasks per node (--ntasks-per-node)")


def _parallel_line(cfg, node_tasks: Sequence[int], dims) -> str:
    """``dims``: the job's ``ParallelDims``, None when the world size is unknown or the sizes do not fit it."""
    tp_size = cfg.parallel.tp_size
    line = f"  parallel       tp_size {tp_size}, ep_size {cfg.parallel.ep_size}"
    if dims is not None:
        line += f", data-parallel {dims.dp_size} of {dims.world_size} ranks"
    if tp_size > 1 and node_tasks:
        per_node = "/".join(map(str, sorted(set(node_tasks))))
        line += f"; TP groups of {tp_size} consecutive ranks inside each node ({per_node} tasks a node)"
    return line


def _check_parallel(cfg, lines: list[str], problems: list[str]) -> None:
    """The process layout against the job's: TP groups inside a node, tp_size and ep_size dividing the
    world (train.py's own check, here before srun)."""
    from vidprism_ds.config.schema import ConfigError
    from vidprism_ds.parallel.dims import ParallelDims

    node_tasks = tasks_per_node(os.environ)
    world_size = int(os.environ["SLURM_NTASKS"]) if os.environ.get("SLURM_NTASKS", "").isdigit() else None
    problem = tensor_parallel_placement_problem(cfg.parallel.tp_size, node_tasks)
    dims = None
    if world_size:
        try:
            dims = ParallelDims(world_size, cfg.parallel.tp_size, cfg.parallel.ep_size)
        except ConfigError as err:
            problem = problem or str(err)
    lines.append(_parallel_line(cfg, node_tasks, dims))
    if problem is not None:
        problems.append(problem)


def main(argv: Optional[Sequence[str]] = None, exports: TextIO = sys.stdout) -> int:
    outer = argparse.ArgumentParser(prog="resolve_settings.py")
    outer.add_argument("--require", action="append", default=[], choices=["init", "train", "val"],
                       help="fail unless train.init_from (when there is no checkpoint to resume from) / the training / "
                            "the validation shards exist")
    outer.add_argument("train_args", nargs=argparse.REMAINDER)
    opts = outer.parse_args(argv)
    train_args = opts.train_args[1:] if opts.train_args[:1] == ["--"] else opts.train_args

    from vidprism_ds.config.schema import ConfigError
    from vidprism_ds.train.cli import build_parser
    from vidprism_ds.train.run_config import DEMO_CONFIG, load_run_config
    from vidprism_ds.train.reporting import wandb_mode

    args = build_parser().parse_args(train_args)
    try:
        cfg = load_run_config(args.config, args.overrides, eval_only=args.eval_only or bool(args.export))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2

    output_dir = Path(cfg.train.output_dir).absolute()
    checkpoints = output_dir / "checkpoints"
    from vidprism_ds.train.checkpoint import newest_complete

    newest = newest_complete(checkpoints) if cfg.train.resume and checkpoints.is_dir() else None
    lines = [f"  config         {args.config or f'{DEMO_CONFIG} (embedded demo)'}"
             + (f" with --set {' '.join(args.overrides)}" if args.overrides else ""),
             f"  deepspeed      {args.deepspeed_config}"]
    problems = []
    if args.config is None:
        lines.append(f"  data           synthetic demo videos under {output_dir.parent / 'demo_data'} (made on first use)")
    else:
        for name, key, path in (("train", "data.train_shards", cfg.data.train_shards),
                                ("val", "data.val_shards", cfg.data.val_shards)):
            found, text = _describe_shards(path)
            lines.append(f"  {name + ' data':<14} {text}")
            if name in opts.require and not found:
                problems.append(f"{key}: {path or '(empty)'} is not a finished shard directory")
    if cfg.train.init_from:
        exists = Path(cfg.train.init_from).is_file()
        lines.append(f"  init from      {cfg.train.init_from}" + ("" if exists else "  MISSING")
                     + (f" (classifier sliced to {cfg.train.init_class_map})" if cfg.train.init_class_map else ""))
        if "init" in opts.require and not exists and newest is None:  # a resumed run does not read it
            problems.append(f"train.init_from: {cfg.train.init_from} does not exist")
    _check_parallel(cfg, lines, problems)
    lines.append(f"  output         {output_dir}")
    target = f" -> {checkpoints.resolve()}" if checkpoints.is_symlink() else ""
    resume = (f"resumes from {newest.tag} (step {newest.step})" if newest is not None else
              "no complete checkpoint yet: starts from step 0" if cfg.train.resume else "train.resume=false")
    lines.append(f"  checkpoints    {checkpoints}{target}; {resume}")
    mode = wandb_mode(cfg.logging)
    lines.append(f"  wandb          {mode}" + ("" if mode == "disabled" else
                                               f", project {cfg.logging.wandb_project}, files under {output_dir / 'wandb'}"))
    if args.eval_only or args.export:
        lines.append(f"  evaluation     {cfg.data.test_clips} clips x {cfg.data.test_crops} crops per video"
                     + (f", export to {args.export}" if args.export else ""))
    print("\n".join(lines), file=sys.stderr, flush=True)
    for problem in problems:
        print(f"config error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"VP_OUTPUT_DIR={shlex.quote(str(output_dir))}", file=exports, flush=True)
    return 0


def _run_with_stdout_reserved() -> int:
    """main() with file descriptor 1 pointed at stderr: libraries that print to stdout on import
    (DeepSpeed's accelerator detection) must not end up in what the batch script evaluates; only the
    ``VP_OUTPUT_DIR=...`` line goes to the real stdout."""
    sys.stdout.flush()
    with os.fdopen(os.dup(1), "w") as real_stdout:
        os.dup2(2, 1)
        return main(exports=real_stdout)


if __name__ == "__main__":
    sys.exit(_run_with_stdout_reserved())
