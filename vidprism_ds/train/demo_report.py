"""``make demo``: VidPrism and a mean-pooling baseline on the same synthetic data, then a short report."""

from __future__ import annotations

import time
from pathlib import Path

import torch.distributed as dist

from vidprism_ds.config.replace import replace_config
from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.train.demo import prepare_demo_data
from vidprism_ds.train.distributed import init_distributed
from vidprism_ds.train.evaluate import TOP_K, top_k_text
from vidprism_ds.train.run import run_experiment
from vidprism_ds.train.signals import EXIT_REQUEUE
from vidprism_ds.train.trainer import RunResult, check_decode_device


def _row(name: str, result: RunResult, num_classes: int) -> str:
    metrics = result.eval_metrics or {}
    accuracy_by_k = {k: metrics.get(f"top{k}", float("nan")) for k in TOP_K}
    return f"  {name:<22} " + top_k_text(accuracy_by_k, num_classes, digits=3, sep="   ")


def run_demo(cfg: ExperimentConfig, ds_config: dict, with_baseline: bool = True) -> int:
    rank, world_size, _ = init_distributed()
    started = time.perf_counter()
    check_decode_device(cfg)  # before minutes of rendering, not after
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
                 _row(f"VidPrism ({cfg.model.head.mode})", vidprism, num_classes)]
        if baseline is not None:
            lines.append(_row("mean pooling (frames)", baseline, num_classes))
        if vidprism.expert_weights:
            rates = cfg.model.head.sampling_rates
            lines.append("  expert weights (readout, eval mean): " + "  ".join(
                f"rate {r}: {w:.2f}" for r, w in zip(rates, vidprism.expert_weights)))
        lines += [f"  steps {vidprism.step}, wall time {time.perf_counter() - started:.0f} s, "
                  f"outputs under {Path(cfg.train.output_dir).absolute().parent}", "=" * 72]
        print("\n".join(lines), flush=True)
    dist.barrier()
    return 0
