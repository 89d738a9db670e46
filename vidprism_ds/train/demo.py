"""The embedded default: synthetic temporal videos, made and sharded on first use.

``train.py`` without ``--config`` loads ``demo.yaml`` (packaged next to this file). Its data live
under ``<output_dir>/demo_data``; rank 0 renders and shards them once while the other ranks wait,
and later runs reuse them (the shard manifests mark them finished).
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from vidprism_ds.config.schema import ExperimentConfig

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")

# Videos per class (4 classes) and their size (64 px: decord mis-decodes some smaller widths): enough for the temporal classes to be learnt in a
# few minutes on 2 CPU cores, small enough to render and shard in well under a minute.
TRAIN_PER_CLASS, VAL_PER_CLASS, VIDEO_SIZE, VIDEO_FRAMES = 512, 64, 64, 16


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
