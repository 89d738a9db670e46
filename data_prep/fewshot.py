#!/usr/bin/env python
"""Draw a K-shot training list: K videos per class, reproducibly, from a training list.

    python data_prep/fewshot.py --list hmdb51_train.txt --shots 16 --seed 0 --out hmdb51_16shot_s0.txt

The selection depends only on --seed and the paths (sha256 ranking, see vidprism_ds/recipes/fewshot.py),
so it is the same on every machine and Python version; shots are nested across K for one seed.
"""

from __future__ import annotations

import argparse
import sys

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.fewshot import draw_few_shot, selection_digest
from vidprism_ds.recipes.labels import PACKAGED_LISTS, load_label_list
from vidprism_ds.recipes.listfile import read_list, write_list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", required=True, help="training list, 'relative/path label' per line")
    parser.add_argument("--shots", type=int, required=True, help="videos per class (e.g. 2, 4, 8, 16)")
    parser.add_argument("--seed", type=int, default=0, help="selection seed (default: %(default)s)")
    parser.add_argument("--out", required=True, help="few-shot list to write")
    parser.add_argument("--labels", default=None,
                        help=f"class list ({', '.join(PACKAGED_LISTS)} or a file): names classes in messages and "
                             "requires every class to be present")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        class_names = load_label_list(args.labels) if args.labels else None
        drawn = draw_few_shot(read_list(args.list), args.shots, args.seed, class_names)
        write_list(args.out, ((line.body, line.label) for line in drawn))
    except (RecipeError, OSError) as err:
        print(f"fewshot: error: {err}", file=sys.stderr)
        return 2
    classes = len({line.label for line in drawn})
    print(f"wrote {len(drawn)} videos ({classes} classes x {args.shots} shots, seed {args.seed}) to {args.out}; "
          f"selection sha256 {selection_digest(drawn)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
