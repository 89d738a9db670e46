"""``make demo``: VidPrism and a mean-pooling baseline on the same synthetic data, then a short report."""

from __future__ import annotations

import time
from pathlib import Path

import torch.distributed as dist

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.train.demo import prepare_demo_data
from vidprism_ds.train.loop import RunResult, init_distributed, replace_config, run_experiment
from vidprism_ds.train.signals import EXIT_REQUEUE


def _row(name: str, result: RunResult) -> str:
    metrics = result.eval_metrics or {}
    return f"  {name:<22} top-1 {metrics.get('top1', float('nan')):.3f}   top-5 {metrics.get('top5', float('nan')):.3f}"


def run_demo(cfg: ExperimentConfig, ds_config: dict, with_baseline: bool = True) -> int:
    rank, world_size, _ = init_distributed()
    started = time.perf_counter()
    cfg = prepare_demo_data(cfg, rank)
    vidprism = run_experiment(cfg, ds_config)
    if vidprism.stopped_by_signal:
        return EXIT_REQUEUE
    baseline = None
    if with_baseline:
        baseline_cfg = replace_config(cfg, model={"variant": "meanpool"}, parallel={"ep_size": 1},
                                      train={"output_dir": str(Path(cfg.train.output_dir).with_name(
                                          Path(cfg.train.output_dir).name + "_meanpool"))})
        baseline = run_experiment(baseline_cfg, ds_config)
        if baseline.stopped_by_signal:
            return EXIT_REQUEUE
    if rank == 0:
        num_classes = len(vidprism.eval_metrics.get("per_class_accuracy", [])) or 4
        lines = ["", "=" * 72, f"VidPrism-DS demo: synthetic temporal videos ({num_classes} classes that differ only "
                 f"in time), {world_size} processes, expert parallelism {cfg.parallel.ep_size}",
                 f"  chance level           top-1 {1 / num_classes:.3f}",
                 _row(f"VidPrism ({cfg.model.head.mode})", vidprism)]
        if baseline is not None:
            lines.append(_row("mean pooling (frames)", baseline))
        if vidprism.expert_weights:
            rates = cfg.model.head.sampling_rates
            lines.append("  expert weights (readout, eval mean): " + "  ".join(
                f"rate {r}: {w:.2f}" for r, w in zip(rates, vidprism.expert_weights)))
        lines += [f"  steps {vidprism.step}, wall time {time.perf_counter() - started:.0f} s, "
                  f"outputs under {Path(cfg.train.output_dir).parent}", "=" * 72]
        print("\n".join(lines), flush=True)
    dist.barrier()
    return 0
