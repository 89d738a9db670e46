"""``python -m vidprism_ds.train.memory``: the estimate for a config on a machine without a GPU.

``python -m vidprism_ds.train.memory --config configs/k400_vitb16.yaml --world-size 8`` prints the
estimate for a preset; the command never builds the full model: parameters are counted on the meta
device, activations measured on shallow towers on the CPU (``measure_shallow_profiles``); with
``model.backbone.grad_checkpointing: auto`` it prints what the trainer would choose on that GPU. Exit 2
when an estimate does not fit (or the config is wrong), with check_fits' message.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Optional, Sequence


from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.train.memory.checkpointing import measure_shallow_profiles
from vidprism_ds.train.memory.estimate import GIB, MemoryEstimate, _gib, load_estimate_config
from vidprism_ds.train.memory.for_config import estimate_for_config
from vidprism_ds.train.memory.fit import check_fits
from vidprism_ds.train.run_config import DEFAULT_DS_CONFIG


EXIT_DOES_NOT_FIT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vidprism_ds.train.memory",
                                description="Estimate the peak GPU memory per rank of a training config "
                                            "(parameters counted on the meta device, activations measured on "
                                            "shallow towers on the CPU; no weights needed).")
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); default: the embedded demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. parallel.tp_size=4")
    p.add_argument("--deepspeed_config", default=DEFAULT_DS_CONFIG, help="DeepSpeed JSON (train.py's default)")
    p.add_argument("--world-size", type=int, nargs="+", default=[1], metavar="N",
                   help="GPUs in the run, one estimate for each (ZeRO partitions over N / parallel.tp_size)")
    p.add_argument("--device-gib", type=float, default=80.0, help="memory of one GPU in GiB")
    p.add_argument("--markdown", action="store_true",
                   help="one Markdown table row per world size (the table of docs/benchmarks.md)")
    p.add_argument("--fit-global-batch", action="store_true",
                   help="where train.global_batch leaves fewer clips per data-parallel rank than train.micro_batch, "
                        "lower the micro-batch to the largest divisor of those clips (as the config error suggests)")
    return p


def micro_batch_for_world(cfg: ExperimentConfig, world_size: int) -> ExperimentConfig:
    """``cfg`` with train.micro_batch lowered to the largest divisor of the clips each data-parallel rank
    trains a step (global batch / (world size / tp_size)) when the configured one does not divide them; as
    it is otherwise (and when the world size does not divide the global batch: the estimate then says why)."""
    from vidprism_ds.parallel.dims import ParallelDims
    from vidprism_ds.train.batch import largest_divisor_up_to

    dp_size = ParallelDims(world_size, cfg.parallel.tp_size, cfg.parallel.ep_size).dp_size
    global_batch, micro = cfg.train.global_batch, cfg.train.micro_batch
    if not global_batch or global_batch % dp_size or global_batch % (micro * dp_size) == 0:
        return cfg
    fitting = largest_divisor_up_to(global_batch // dp_size, micro)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch=fitting, grad_accum=1))


MARKDOWN_HEADER = ("| preset | GPUs | TP | DP | ZeRO | checkpointing | micro-batch x accum | parameters | gradients "
                   "| optimizer | activations | workspace | total GiB | fits |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def markdown_row(name: str, estimate: MemoryEstimate, fits: bool) -> str:
    """One row of MARKDOWN_HEADER's table: GiB per rank."""
    parts = (estimate.parameter_bytes, estimate.gradient_bytes, estimate.optimizer_bytes, estimate.activation_bytes,
             estimate.workspace_bytes, estimate.total_bytes)
    return (f"| {name} | {estimate.dims.world_size} | {estimate.dims.tp_size} | {estimate.dims.dp_size} | "
            f"{estimate.zero_stage} | {estimate.checkpointing} | "
            f"{estimate.micro_batch} x {estimate.grad_accum} | "
            + " | ".join(_gib(part) for part in parts) + f" | {'yes' if fits else 'no'} |")


def _does_not_fit(estimate: MemoryEstimate, device_gib: float, fraction: float) -> Optional[str]:
    """check_fits' message, or None when the estimate fits."""
    try:
        check_fits(estimate, int(device_gib * GIB), fraction)
    except ConfigError as err:
        return str(err)
    return None


def _print_estimate(estimate: MemoryEstimate, problem: Optional[str], device_gib: float, fraction: float) -> None:
    print(estimate.format())
    if problem is not None:
        print(f"config error: {problem}", file=sys.stderr)
    else:
        print(f"fits: {_gib(estimate.total_bytes)} GiB <= {fraction:g} x {device_gib:g} GiB" if fraction > 0
              else "not checked: train.memory_limit_fraction=0")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from vidprism_ds.train.ds_config import read_ds_config, training_dtype

    all_fit = True
    try:
        cfg = load_estimate_config(args.config, args.overrides)
        ds_config = read_ds_config(args.deepspeed_config)
        # the GPU's training dtype, as resolve_ds_config decides it; the profile serves every world size
        profiles = measure_shallow_profiles(cfg, training_dtype(cfg.train.precision, on_gpu=True))
        if args.markdown:
            print(MARKDOWN_HEADER)
        for world_size in args.world_size:
            run_cfg = micro_batch_for_world(cfg, world_size) if args.fit_global_batch else cfg
            estimate, choice = estimate_for_config(run_cfg, ds_config, world_size, profiles, args.device_gib * GIB)
            problem = _does_not_fit(estimate, args.device_gib, run_cfg.train.memory_limit_fraction)
            all_fit = all_fit and problem is None
            if args.markdown:
                print(markdown_row(Path(args.config).stem if args.config else "demo", estimate, problem is None))
            else:
                if choice is not None:
                    print(choice.describe())
                _print_estimate(estimate, problem, args.device_gib, cfg.train.memory_limit_fraction)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    return 0 if all_fit else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
