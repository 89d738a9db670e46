"""Zero-shot transfer, the class-list side: which target classes to evaluate, and list remapping.

A model trained on a source label set (K400) is evaluated on a target (UCF101, HMDB51, K600) by
scoring each video against the text embeddings of the target class names. Which target classes count:

- Kinetics targets (k400/k600/k700/k710 against a Kinetics source): overlap is exact, through the
  positional K710 index maps (a target class overlaps when its K710 row is one of the source's rows).
  The standard K600 protocol evaluates the K600 classes outside K400; note the packaged maps give
  218 of them, not the 220 of the literature (docs/recipes.md lists the differing classes).
- Other targets (UCF101, HMDB51, SSv2): the lists share no ids, so overlap is *approximate*: equal
  names after ``normalise_class_name``. The standard protocol for UCF101/HMDB51 evaluates all classes;
  excluding the name matches is an option for a stricter "unseen classes only" reading.

``exclude_overlap=None`` follows the standard protocol: exclude for Kinetics targets, keep all otherwise.
Evaluated classes keep the target's own names (the prompts use them) and are renumbered 0..n-1 in
target order; ``remap_lines`` applies that renumbering to a list file.

    python -m vidprism_ds.recipes.zeroshot --source k400 --target k600 --list k600_val.txt \
        --out k600_zs_val.txt --labels-out k600_zs_classes.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.data.video_lists import LIST_ENCODING
from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.labels import KINETICS_SUBSETS, K710_CLASSES, PACKAGED_LISTS, k710_index_map, packaged_label_list
from vidprism_ds.recipes.listfile import ListLine, read_list, write_list

KINETICS_LISTS = KINETICS_SUBSETS + ("k710",)
RULE_INDEX_MAP = "k710-index-map"
RULE_NAME = "normalised-name"
RULE_NONE = "none"
_ARTICLES = {"a", "an", "the"}


def normalise_class_name(name: str) -> str:
    """Lower-case words of a class name, for approximate matching across datasets.

    CamelCase and snake_case are split ("ApplyEyeMakeup", "brush_hair"), parenthesised qualifiers
    dropped ("skiing (not slalom or crosscountry)" -> "skiing"), punctuation and articles removed.
    """
    text = re.sub(r"\([^)]*\)", " ", name)
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    words = re.sub(r"[^A-Za-z0-9]+", " ", text).lower().split()
    return " ".join(w for w in words if w not in _ARTICLES)


def _k710_rows(dataset: str) -> tuple[int, ...]:
    return tuple(range(K710_CLASSES)) if dataset == "k710" else k710_index_map(dataset)


@dataclass(frozen=True)
class ZeroShotClasses:
    source: str
    target: str
    rule: str  # how overlap was decided: RULE_INDEX_MAP, RULE_NAME or RULE_NONE (nothing excluded)
    kept: tuple[int, ...]  # target class ids evaluated, ascending; new id = position here
    names: tuple[str, ...]  # their names, as the target list spells them
    excluded: tuple[tuple[str, str], ...]  # (target name, overlapping source name), in target order

    def new_label(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept)}


def _overlap(source: str, target: str) -> tuple[str, dict[int, str]]:
    """The rule and target class id -> the source class name it overlaps."""
    source_names, target_names = packaged_label_list(source), packaged_label_list(target)
    if source in KINETICS_LISTS and target in KINETICS_LISTS:
        source_by_row = dict(zip(_k710_rows(source), source_names))
        return RULE_INDEX_MAP, {i: source_by_row[row] for i, row in enumerate(_k710_rows(target)) if row in source_by_row}
    source_by_name = {}
    for name in source_names:
        source_by_name.setdefault(normalise_class_name(name), name)
    return RULE_NAME, {i: source_by_name[normalise_class_name(name)] for i, name in enumerate(target_names)
                       if normalise_class_name(name) in source_by_name}


def zero_shot_classes(source: str = "k400", target: str = "k600",
                      exclude_overlap: Optional[bool] = None) -> ZeroShotClasses:
    """The target classes to evaluate after training on ``source`` (both packaged list names)."""
    for name in (source, target):
        if name not in PACKAGED_LISTS:
            raise RecipeError(f"unknown label list {name!r}; known: {', '.join(PACKAGED_LISTS)}")
    if exclude_overlap is None:
        exclude_overlap = target in KINETICS_LISTS
    target_names = packaged_label_list(target)
    rule, overlapping = _overlap(source, target) if exclude_overlap else (RULE_NONE, {})
    kept = tuple(i for i in range(len(target_names)) if i not in overlapping)
    if not kept:
        raise RecipeError(f"every {target} class overlaps {source}: nothing left to evaluate zero-shot")
    return ZeroShotClasses(source=source, target=target, rule=rule, kept=kept,
                           names=tuple(target_names[i] for i in kept),
                           excluded=tuple((target_names[i], overlapping[i]) for i in sorted(overlapping)))


def restrict_to_names(selection: ZeroShotClasses, names: Sequence[str]) -> ZeroShotClasses:
    """Keep only ``names`` (e.g. one of the published 160-class K600 splits), in target order."""
    wanted = set(names)
    unknown = sorted(wanted - set(selection.names))
    if unknown:
        raise RecipeError(f"{len(unknown)} class(es) are not among the {len(selection.names)} evaluated "
                          f"{selection.target} classes, e.g. {unknown[0]!r}")
    pairs = [(i, n) for i, n in zip(selection.kept, selection.names) if n in wanted]
    return ZeroShotClasses(selection.source, selection.target, selection.rule,
                           kept=tuple(i for i, _ in pairs), names=tuple(n for _, n in pairs),
                           excluded=selection.excluded)


def remap_lines(lines: Sequence[ListLine], selection: ZeroShotClasses) -> tuple[list[tuple[str, int]], int]:
    """``(path, new label)`` for lines of evaluated classes, and how many lines were dropped.

    Labels are the target's original ids; one outside the target list is an error (wrong list?).
    """
    num_target = len(packaged_label_list(selection.target))
    new_label = selection.new_label()
    kept, dropped = [], 0
    for line in lines:
        if line.label >= num_target:
            raise RecipeError(f"line {line.line_no}: label {line.label} is out of range for {selection.target} "
                              f"({num_target} classes)")
        if line.label in new_label:
            kept.append((line.body, new_label[line.label]))
        else:
            dropped += 1
    return kept, dropped


def remap_list_file(list_path: str | Path, selection: ZeroShotClasses, out_path: str | Path) -> tuple[int, int]:
    """Write the remapped list; returns (lines written, lines dropped)."""
    rows, dropped = remap_lines(read_list(list_path), selection)
    return write_list(out_path, rows), dropped


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vidprism_ds.recipes.zeroshot",
                                     description="Zero-shot target classes and list remapping.")
    parser.add_argument("--source", default="k400", choices=PACKAGED_LISTS, help="training label set")
    parser.add_argument("--target", required=True, choices=PACKAGED_LISTS, help="evaluation label set")
    overlap = parser.add_mutually_exclusive_group()
    overlap.add_argument("--exclude-overlap", dest="exclude", action="store_true", default=None,
                         help="drop target classes that overlap the source (default for Kinetics targets)")
    overlap.add_argument("--keep-overlap", dest="exclude", action="store_false",
                         help="evaluate all target classes (default for UCF101/HMDB51/SSv2)")
    parser.add_argument("--only", help="file of target class names to restrict to (e.g. a published split)")
    parser.add_argument("--list", help="target list file ('path label', target ids) to remap")
    parser.add_argument("--out", help="remapped list to write (needs --list)")
    parser.add_argument("--labels-out", help="write the evaluated class names, one a line, new id = line")
    parser.add_argument("--show-excluded", action="store_true", help="print every excluded class and its match")
    args = parser.parse_args(argv)
    if bool(args.list) != bool(args.out):
        parser.error("--list and --out go together")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    try:
        selection = zero_shot_classes(args.source, args.target, args.exclude)
        if args.only:
            only = [n.strip() for n in Path(args.only).read_text(encoding=LIST_ENCODING).splitlines() if n.strip()]
            selection = restrict_to_names(selection, only)
        print(f"{args.target}: evaluating {len(selection.kept)} classes, {len(selection.excluded)} excluded "
              f"as overlapping {args.source} (rule: {selection.rule})")
        for target_name, source_name in selection.excluded if args.show_excluded else ():
            print(f"  excluded: {target_name!r} ~ {args.source} {source_name!r}")
        if args.labels_out:
            Path(args.labels_out).write_text("".join(f"{n}\n" for n in selection.names), encoding="utf-8")
        if args.list:
            written, dropped = remap_list_file(args.list, selection, args.out)
            print(f"{args.out}: {written} videos kept, {dropped} of excluded classes dropped")
    except (RecipeError, OSError) as err:
        print(f"zeroshot: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
