"""``train.py``: parse arguments, load the config, run (or export), exit with a meaningful code.

Exit codes: 0 done; 2 bad configuration or arguments (one line naming the key, or FILE:LINE:COL for
YAML that does not parse); 3 stopped by SIGUSR1/SIGTERM after saving a checkpoint (requeue to continue).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.config.schema import ConfigError
from vidprism_ds.train.run_config import DEFAULT_DS_CONFIG, check_run_data, ds_config_path, load_run_config

EXIT_CONFIG = 2
EXIT_FAILED = 1  # the run failed for a reason outside the config (a full disk)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train.py", description="Train or evaluate VidPrism with DeepSpeed. "
                                "Without --config: the demo on synthetic temporal videos.")
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); default: the embedded demo. Outputs go "
                   "to train.output_dir, which, when relative, is taken from the current folder")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--deepspeed_config", default=None,
                   help=f"DeepSpeed JSON (default: {DEFAULT_DS_CONFIG}, whatever the current folder)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # from the deepspeed launcher
    p.add_argument("--eval-only", action="store_true", help="evaluate the newest checkpoint (or train.init_from)")
    p.add_argument("--export", metavar="PATH", help="write the newest checkpoint as one fp32 state dict and exit")
    p.add_argument("--zero-shot-labels", metavar="DATASET_OR_FILE",
                   help="evaluate zero-shot on this label set (preset name or label file) through the class "
                        "text embeddings; data.val_shards must hold that dataset")
    p.add_argument("--no-baseline", action="store_true", help="demo only: skip the mean-pooling baseline run")
    return p


def name_the_accelerator() -> None:
    """Tell DeepSpeed the device the trainer will use (a GPU when torch sees one, else the CPU), before it
    is imported: left to guess, it warns in every process that it fell back to the CPU. Lines that stay
    are listed in docs/training.md."""
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def _check_against_launch(cfg, ds_config: dict) -> int:
    """Fail before any process group, data or model exists: world size vs ep_size and batch sizes.
    Returns this process's rank."""
    import torch

    from vidprism_ds.model.video_model import has_experts
    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.ds_config import resolve_ds_config
    from vidprism_ds.train.launch import resolve_launch

    launch = resolve_launch(os.environ, scontrol=None)
    # batch sizes count data-parallel ranks: the ranks of one tensor-parallel group share their batch
    dims = ParallelDims(launch.world_size, cfg.parallel.tp_size, cfg.parallel.ep_size)
    resolve_ds_config(ds_config, cfg, dims, torch.cuda.is_available(), has_experts(cfg.model))
    return launch.rank


def _zero_shot_class_names(zero_shot_labels: str) -> Optional[list[str]]:
    if not zero_shot_labels:
        return None
    from vidprism_ds.data.presets import load_class_names
    label_file = zero_shot_labels if Path(zero_shot_labels).is_file() else ""
    return load_class_names("custom" if label_file else zero_shot_labels, label_file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    name_the_accelerator()
    import torch

    from vidprism_ds.train.library_output import quiet_libraries
    quiet_libraries(on_gpu=torch.cuda.is_available())  # before DeepSpeed is imported: docs/training.md
    try:
        is_demo = args.config is None
        cfg = load_run_config(args.config, args.overrides, eval_only=args.eval_only or bool(args.export))
        if not is_demo:  # the demo makes its own shards; any other run fails here, not after the model is built
            check_run_data(cfg)  # the trainer checks the shards' contents before any process group
        from vidprism_ds.train.ds_config import read_ds_config
        ds_config = read_ds_config(ds_config_path(args.deepspeed_config))
        rank = _check_against_launch(cfg, ds_config)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if rank == 0:  # a relative output_dir lands in the current folder: say which folder that is
        print(f"train.py: outputs in {Path(cfg.train.output_dir).absolute()} (train.output_dir)", flush=True)

    from vidprism_ds.train.checkpoint_engine import UnsafeCheckpointError
    from vidprism_ds.train.signals import EXIT_REQUEUE
    from vidprism_ds.utils.files import OutOfSpaceError
    try:
        if is_demo:
            from vidprism_ds.train.demo import run_demo
            return run_demo(cfg, ds_config, with_baseline=not args.no_baseline and not cfg.train.eval_only)
        from vidprism_ds.train.run import run_experiment
        zero_shot = _zero_shot_class_names(args.zero_shot_labels)
        result = run_experiment(cfg, ds_config, export_path=args.export, zero_shot_class_names=zero_shot)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except UnsafeCheckpointError as err:  # a file we were handed would run code: the user's input
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except OutOfSpaceError as err:  # not a bug: one line naming where, and the checkpoints stay as they were
        print(f"error: {err.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_REQUEUE if result.stopped_by_signal else 0
