#!/usr/bin/env python
"""Build the Kinetics-710 train/val lists from the K400/K600/K700 annotation CSVs and a video root.

    python data_prep/build_k710.py --k400 ann/k400 --k600 ann/k600 --k700 ann/k700 \
        --video-root /data/kinetics --out-dir lists/k710

Writes k710_train.txt and k710_val.txt (``relative/path label``, paths relative to --video-root),
k710_missing.tsv and k710_summary.json under --out-dir, and prints the counts, the list sizes beside the
published K710 sizes, and warnings (annotation files skipped, classes left without a video). The rules
are in vidprism_ds/recipes/kinetics.py and docs/recipes.md.
"""

from __future__ import annotations

import argparse
import sys

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.k710_report import format_summary, write_outputs
from vidprism_ds.recipes.kinetics import DEFAULT_PRECEDENCE, build_k710_lists
from vidprism_ds.recipes.labels import KINETICS_SUBSETS
from vidprism_ds.recipes.layouts import LAYOUT_PRESETS


def parse_subdirs(items: list[str]) -> dict[str, str]:
    subdirs = {}
    for item in items:
        dataset, sep, folder = item.partition("=")
        if not sep or dataset not in KINETICS_SUBSETS or not folder:
            raise RecipeError(f"--subdir {item!r}: expected DATASET=FOLDER with DATASET one of {', '.join(KINETICS_SUBSETS)}")
        subdirs[dataset] = folder
    return subdirs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for dataset in KINETICS_SUBSETS:
        parser.add_argument(f"--{dataset}", nargs="+", required=True, metavar="CSV_OR_DIR",
                            help=f"{dataset} annotation CSV files, or folders whose *.csv (and *.txt with a CSV "
                                 "header, preferred over a .csv of the same name) are read (train, validate, test)")
    parser.add_argument("--video-root", required=True, help="folder the list paths are relative to")
    parser.add_argument("--out-dir", required=True, help="where the lists, missing list and summary JSON go")
    parser.add_argument("--layout", default="auto",
                        help=f"video file naming under each dataset folder: auto (default: detected per dataset), "
                             f"a preset ({'; '.join(f'{k}={v}' for k, v in LAYOUT_PRESETS.items())}) "
                             "or a template with {dataset} {split} {csv_split} {label} {label_underscored} "
                             "{youtube_id} {start} {end}")
    parser.add_argument("--subdir", action="append", default=[], metavar="DATASET=FOLDER",
                        help="folder of a dataset's videos under --video-root (default: its name, e.g. k400; '.' = the root)")
    parser.add_argument("--precedence", default=",".join(DEFAULT_PRECEDENCE),
                        help="which dataset's row wins for an id found in several (default: %(default)s)")
    parser.add_argument("--lenient", action="store_true",
                        help="skip (and report) rows whose label is not in their dataset's list instead of failing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = build_k710_lists(
            annotations={d: getattr(args, d) for d in KINETICS_SUBSETS}, video_root=args.video_root,
            layout=args.layout, subdirs=parse_subdirs(args.subdir),
            precedence=[p.strip() for p in args.precedence.split(",")], lenient=args.lenient)
        outputs = write_outputs(result, args.out_dir, args.video_root)
    except (RecipeError, OSError) as err:
        print(f"build_k710: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result, outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
