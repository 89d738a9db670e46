"""``python -m vidprism_ds.analysis EXPORT --data DATA --out DIR``: expert-specialisation figures.

EXPORT is a consolidated state dict (``python train.py --export PATH``) with its experiment config next
to it (see ``vidprism_ds.analysis.loading``). DATA is a shard directory (with ``manifest.json``) or a
video list file decoded on the fly; the config's ``data.*`` settings (frames, image size, views) apply.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from vidprism_ds.analysis.collect import collect, expert_names, sampler_rates
from vidprism_ds.analysis.loading import load_export
from vidprism_ds.analysis.report import write_specialisation_report


def build_loader(data_cfg, data_path: Path, batch_size: int):
    from vidprism_ds.data import build_eval_loader, build_raw_eval_loader

    if data_path.is_dir():
        if not (data_path / "manifest.json").is_file():
            raise FileNotFoundError(f"{data_path}: a shard directory needs a manifest.json")
        return build_eval_loader(data_cfg, data_path, batch_size)
    if data_path.is_file():
        return build_raw_eval_loader(data_cfg, data_path, batch_size)
    raise FileNotFoundError(f"--data {data_path}: neither a shard directory nor a video list file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidprism_ds.analysis", description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="exported state dict (python train.py --export PATH)")
    parser.add_argument("--data", required=True, help="shard directory or video list file to analyse")
    parser.add_argument("--out", required=True, help="folder for the PNGs and summary.json")
    parser.add_argument("--config", default="", help="experiment YAML (default: found next to the export)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. data.num_workers=0 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-clips", type=int, default=0, help="stop after this many clips (0 = all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    loaded = load_export(args.export, args.config or None, args.set)
    model = loaded.model.to(args.device)
    loader = build_loader(loaded.cfg.data, Path(args.data), args.batch_size)
    spec = collect(model, loader, max_clips=args.max_clips, device=args.device)
    head = model.head
    paths = write_specialisation_report(spec, loaded.class_names, expert_names(head, spec.num_experts),
                                        sampler_rates(head), args.out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
