"""``make demo``: VidPrism and a mean-pooling baseline on the same synthetic data, then a short report.

``train.py`` without ``--config`` loads ``demo.yaml`` (packaged next to this file,
``vidprism_ds.train.run_config.DEMO_CONFIG``) and calls ``run_demo``. The demo's data are synthetic
temporal videos, made and sharded on first use under ``<output_dir>/demo_data``: rank 0 renders and
shards them once while the other ranks wait, and later runs reuse them (the shard manifests mark them
finished).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch.distributed as dist

from vidprism_ds.analysis.eval_result import TOP_K, top_k_text
from vidprism_ds.config.replace import replace_config
from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.train.distributed import init_distributed
from vidprism_ds.train.loop_state import RunResult
from vidprism_ds.train.run import run_experiment
from vidprism_ds.train.signals import EXIT_REQUEUE
from vidprism_ds.train.startup_checks import check_decode_device

# Videos per class (4 classes) and their size (64 px: decord mis-decodes some smaller widths): enough for the temporal classes to be learnt in a
# few minutes on 2 CPU cores, small enough to render and shard in well under a minute.
TRAIN_PER_CLASS, VAL_PER_CLASS, VIDEO_SIZE, VIDEO_FRAMES = 512, 64, 64, 16


# --------------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------------


def _shard(root: Path, split: str, out: Path) -> None:
    from vidprism_ds.data.prep.cli import main as shard_main

    code = shard_main(["--root", str(root), "--list", str(root / f"{split}.txt"), "--out", str(out),
                       "--dataset", "synthetic", "--workers", "2", "--no-progress", "--shard-size", "64"])
    if code != 0:
        raise RuntimeError(f"sharding the demo's {split} videos failed (exit {code}); see {out}")


def prepare_demo_data(cfg: ExperimentConfig, rank: int) -> ExperimentConfig:
    """Fill data.train_shards / data.val_shards with the demo's shards, creating them if needed."""
    from vidprism_ds.data.manifest import load_manifest
    from vidprism_ds.data.synthetic import make_dataset

    base = Path(cfg.train.output_dir).parent / "demo_data"
    train_dir, val_dir = base / "shards" / "train", base / "shards" / "val"
    if rank == 0:
        def ready(d: Path) -> bool:
            try:
                return load_manifest(d).num_samples > 0
            except (FileNotFoundError, ValueError):
                return False
        if not (ready(train_dir) and ready(val_dir)):
            print(f"demo: rendering synthetic temporal videos and sharding them under {base.absolute()} "
                  "(first run only)", flush=True)
            make_dataset(base / "videos", train_per_class=TRAIN_PER_CLASS, val_per_class=VAL_PER_CLASS,
                         size=VIDEO_SIZE, num_frames=VIDEO_FRAMES, seed=cfg.train.seed)
            _shard(base / "videos", "train", train_dir)
            _shard(base / "videos", "val", val_dir)
    if dist.is_initialized():
        dist.barrier()
    cfg.data.train_shards, cfg.data.val_shards = str(train_dir), str(val_dir)
    return cfg


# --------------------------------------------------------------------------------------------------
# The runs and the report
# --------------------------------------------------------------------------------------------------


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
