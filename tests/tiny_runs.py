"""The tiny synthetic CPU configuration that training, distributed and Slurm tests run train.py with."""

from pathlib import Path

from vidprism_ds.data.prep.cli import main as shard_main
from vidprism_ds.data.synthetic import make_dataset


def make_tiny_shards(root: Path) -> dict[str, Path]:
    """4 classes x 4 train / 2 val synthetic temporal videos, sharded (a few seconds)."""
    make_dataset(root / "videos", train_per_class=4, val_per_class=2, size=64, num_frames=8, seed=0)
    out = {}
    for split in ("train", "val"):
        out[split] = root / "shards" / split
        code = shard_main(["--root", str(root / "videos"), "--list", str(root / "videos" / f"{split}.txt"),
                           "--out", str(out[split]), "--dataset", "synthetic", "--workers", "1", "--no-progress",
                           "--shard-size", "4"])
        assert code == 0
    return out


def tiny_overrides(shards, output_dir, **extra) -> list[str]:
    """--set values for the tiny model on ``shards``; ``extra`` keys use ``__`` for dots (train__epochs=2)."""
    values = {
        "model.backbone.image_size": 32, "data.image_size": 32, "data.num_frames": 8,
        "data.train_shards": shards["train"], "data.val_shards": shards["val"], "data.num_workers": 0,
        "train.micro_batch": 4, "train.output_dir": output_dir, "logging.wandb_mode": "disabled",
        "logging.log_every_steps": 1, "train.eval_every_epochs": 0, "optim.warmup_steps": 2,
    }
    values.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in values.items()]
