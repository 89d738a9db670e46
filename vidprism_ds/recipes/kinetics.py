"""Kinetics-710 train/val lists from the K400, K600 and K700 annotation CSVs.

Rules (docs/recipes.md explains the choices):

- train = union of the three training sets, one entry per YouTube id, minus every id that appears in
  any K400/K600/K700 validation or test set (those would leak into evaluation);
- val = union of the three validation sets, one entry per YouTube id;
- a CSV label name is looked up in that dataset's *own* packaged list (giving class i), then mapped to
  K710 with the positional index map; lists are never joined by name;
- when an id appears several times (across or within datasets) the rows are ranked by dataset
  precedence (default K700 > K600 > K400: the newer release carries the revised label), then by
  input order; the first row whose video is on disk supplies path and label, the rest are duplicates.
  Rows of one id whose K710 labels disagree are reported as conflicts;
- an id with no copy on disk is reported missing (under its first-ranked row) and left out;
- K710 classes that end up with no video in a list are reported (``empty_classes``): a class missing
  from val cannot be evaluated and one missing from train cannot be learnt, which a total alone hides.

Every row of a split is counted exactly once per dataset:
``rows = kept + duplicates + leaks + missing + unknown_label``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.kinetics_csv import AnnotationRow, read_dataset_annotations
from vidprism_ds.recipes.labels import K710_CLASSES, KINETICS_SUBSETS, k710_index_map, packaged_label_list
from vidprism_ds.recipes.layouts import AUTO, LAYOUT_PRESETS, detect_layout, relative_video_path, resolve_template

DEFAULT_PRECEDENCE = ("k700", "k600", "k400")
OUTPUT_SPLITS = ("train", "val")
COUNTERS = ("rows", "kept", "duplicates", "leaks", "missing", "unknown_label")


class DatasetLabels:
    """CSV class name -> K710 row for one dataset, through that dataset's own list.

    Matching is exact, then case-insensitive (CSV and list spellings of one release differ in case
    only, e.g. "American"); a case-folded name shared by two classes is never matched loosely.
    """

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.names = packaged_label_list(dataset)
        self.index_map = k710_index_map(dataset)
        self._exact = {name: i for i, name in enumerate(self.names)}
        folded: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(self.names):
            folded[name.casefold()].append(i)
        self._folded = {key: ids[0] for key, ids in folded.items() if len(ids) == 1}

    def class_index(self, name: str) -> Optional[int]:
        found = self._exact.get(name)
        return found if found is not None else self._folded.get(name.casefold())

    def k710_row(self, name: str) -> Optional[int]:
        i = self.class_index(name)
        return None if i is None else self.index_map[i]


@dataclass(frozen=True)
class LabelledRow:
    row: AnnotationRow
    k710: int


@dataclass(frozen=True)
class MissingVideo:
    dataset: str
    split: str
    youtube_id: str
    path: str  # relative to the video root, as the list would have had it


@dataclass
class K710Lists:
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    missing: list[MissingVideo]
    conflicts: list[dict]
    unknown_labels: dict[str, dict[str, int]]  # dataset -> CSV name -> rows skipped (--lenient)
    counts: dict[str, dict[str, dict[str, int]]]  # split -> dataset -> counter -> value
    layouts: dict[str, dict]  # dataset -> {"layout", "template", "subdir", "detect_hits"}
    precedence: tuple[str, ...]
    eval_ids: int  # distinct ids in any val/test set
    warnings: list[str] = field(default_factory=list)  # about the input: annotation files, test sets
    empty_classes: dict[str, list[int]] = field(default_factory=dict)  # split -> K710 rows with no video


def _as_list(paths: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _check_precedence(precedence: Sequence[str]) -> tuple[str, ...]:
    if sorted(precedence) != sorted(KINETICS_SUBSETS):
        raise RecipeError(f"precedence {','.join(precedence)!r} must name each of {', '.join(KINETICS_SUBSETS)} once")
    return tuple(precedence)


def _label_rows(rows: Sequence[AnnotationRow], labels: DatasetLabels, lenient: bool,
                unknown: dict[str, int]) -> list[LabelledRow]:
    """Train/val rows with their K710 row; unknown names are counted in ``unknown`` (and raise unless lenient)."""
    labelled, first_seen = [], {}
    for row in rows:
        k710 = labels.k710_row(row.label_name)
        if k710 is None:
            unknown[row.label_name] = unknown.get(row.label_name, 0) + 1
            first_seen.setdefault(row.label_name, row.where)
            continue
        labelled.append(LabelledRow(row, k710))
    if unknown and not lenient:
        name, where = next(iter(first_seen.items()))
        raise RecipeError(f"{labels.dataset}: {len(unknown)} CSV label(s) not in the packaged {labels.dataset} list "
                          f"({len(labels.names)} classes), e.g. {name!r} at {where}; fix the CSV or pass --lenient to skip them")
    return labelled


def _resolve_layout(dataset: str, layout: str, root: Path, subdir: str, rows: Sequence[AnnotationRow]) -> dict:
    if layout == AUTO:
        name, hits = detect_layout(dataset, root, subdir, rows)
        return {"layout": name, "template": LAYOUT_PRESETS[name], "subdir": subdir, "detect_hits": hits}
    return {"layout": layout, "template": resolve_template(layout), "subdir": subdir, "detect_hits": None}


def _deduplicate(split: str, candidates: Sequence[LabelledRow], rank: Mapping[str, int], root: Path,
                 layouts: Mapping[str, dict], counts: dict[str, dict[str, int]],
                 missing: list[MissingVideo], conflicts: list[dict]) -> list[tuple[str, int]]:
    by_id: dict[str, list[LabelledRow]] = defaultdict(list)
    for item in candidates:
        by_id[item.row.youtube_id].append(item)
    kept = []
    for youtube_id in sorted(by_id):
        group = sorted(by_id[youtube_id], key=lambda it: (rank[it.row.dataset], it.row.order))
        paths = [relative_video_path(layouts[it.row.dataset]["template"], layouts[it.row.dataset]["subdir"], it.row)
                 for it in group]
        # Stat lazily: the first copy on disk in precedence order wins, the rest need no look-up.
        winner = next((i for i, path in enumerate(paths) if (root / path).is_file()), None)
        if winner is None:
            counts[group[0].row.dataset]["missing"] += 1
            missing.append(MissingVideo(group[0].row.dataset, split, youtube_id, paths[0]))
        else:
            counts[group[winner].row.dataset]["kept"] += 1
            kept.append((paths[winner], group[winner].k710))
        for i, item in enumerate(group):
            if i != (0 if winner is None else winner):
                counts[item.row.dataset]["duplicates"] += 1
        if len({item.k710 for item in group}) > 1:
            conflicts.append({
                "split": split, "youtube_id": youtube_id,
                "kept_from": None if winner is None else group[winner].row.dataset,
                "rows": [{"dataset": it.row.dataset, "label": it.row.label_name, "k710": it.k710,
                          "where": it.row.where} for it in group],
            })
    return sorted(kept)


def build_k710_lists(annotations: Mapping[str, str | Path | Sequence[str | Path]], video_root: str | Path, layout: str = AUTO,
                     subdirs: Optional[Mapping[str, str]] = None, precedence: Sequence[str] = DEFAULT_PRECEDENCE,
                     lenient: bool = False) -> K710Lists:
    """Build the K710 lists. ``annotations``: dataset -> CSV file(s) or folder(s) (all three datasets).

    ``subdirs``: dataset -> folder under ``video_root`` holding its videos (default: the dataset name;
    "." for the root itself). ``layout``: a preset name, a template, or "auto" (detected per dataset).
    """
    precedence = _check_precedence(precedence)
    absent = [d for d in KINETICS_SUBSETS if not annotations.get(d)]
    if absent:
        raise RecipeError(f"annotation CSVs missing for {', '.join(absent)}: K710 needs K400, K600 and K700")
    root = Path(video_root)
    if not root.is_dir():
        raise RecipeError(f"video root {root} is not a folder")
    subdirs = {d: (subdirs or {}).get(d, d) for d in KINETICS_SUBSETS}
    rank = {dataset: i for i, dataset in enumerate(precedence)}

    warnings: list[str] = []  # files a folder held but that were not read come first
    rows = {d: read_dataset_annotations(_as_list(annotations[d]), d, warnings) for d in KINETICS_SUBSETS}
    warnings += [f"{d}: no test rows given; ids of the {d} test set cannot be removed from training"
                 for d in KINETICS_SUBSETS if not any(r.split == "test" for r in rows[d])]
    eval_ids = {r.youtube_id for d in KINETICS_SUBSETS for r in rows[d] if r.split in ("val", "test")}

    counts = {s: {d: dict.fromkeys(COUNTERS, 0) for d in KINETICS_SUBSETS} for s in OUTPUT_SPLITS}
    unknown_labels: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[LabelledRow]] = {s: [] for s in OUTPUT_SPLITS}
    layouts = {}
    for dataset in KINETICS_SUBSETS:
        labels, unknown = DatasetLabels(dataset), {}
        for split in OUTPUT_SPLITS:
            split_rows = [r for r in rows[dataset] if r.split == split]
            counts[split][dataset]["rows"] = len(split_rows)
            before = sum(unknown.values())
            labelled = _label_rows(split_rows, labels, lenient, unknown)
            counts[split][dataset]["unknown_label"] = sum(unknown.values()) - before
            if split == "train":
                leaked = [item for item in labelled if item.row.youtube_id in eval_ids]
                counts[split][dataset]["leaks"] = len(leaked)
                labelled = [item for item in labelled if item.row.youtube_id not in eval_ids]
            candidates[split].extend(labelled)
        if unknown:
            unknown_labels[dataset] = dict(sorted(unknown.items()))
        usable = [r for r in rows[dataset] if r.split in OUTPUT_SPLITS and labels.k710_row(r.label_name) is not None]
        layouts[dataset] = _resolve_layout(dataset, layout, root, subdirs[dataset], usable)

    missing: list[MissingVideo] = []
    conflicts: list[dict] = []
    lists = {split: _deduplicate(split, candidates[split], rank, root, layouts, counts[split], missing, conflicts)
             for split in OUTPUT_SPLITS}
    _check_invariants(lists, counts, eval_ids, rows, layouts)
    return K710Lists(train=lists["train"], val=lists["val"], missing=missing, conflicts=conflicts,
                     unknown_labels=unknown_labels, counts=counts, layouts=layouts, precedence=precedence,
                     eval_ids=len(eval_ids), warnings=warnings,
                     empty_classes={split: empty_classes(lists[split]) for split in OUTPUT_SPLITS})


def empty_classes(rows: Sequence[tuple[str, int]]) -> list[int]:
    """The K710 rows (0..709) that no ``(path, label)`` row of a list uses, ascending."""
    return sorted(set(range(K710_CLASSES)) - {label for _, label in rows})


def _check_invariants(lists, counts, eval_ids, rows, layouts) -> None:
    """Bookkeeping checks: a failure here is a bug in this module, not bad input."""
    for split, per_dataset in counts.items():
        for dataset, c in per_dataset.items():
            accounted = c["kept"] + c["duplicates"] + c["leaks"] + c["missing"] + c["unknown_label"]
            assert c["rows"] == accounted, (split, dataset, c)
        assert len({path for path, _ in lists[split]}) == len(lists[split]), f"{split}: a path twice"
    # Paths contain the YouTube id, so map each listed path back to its id to check the leak rule.
    train_paths = {path for path, _ in lists["train"]}
    for dataset in KINETICS_SUBSETS:
        for row in rows[dataset]:
            if row.youtube_id in eval_ids and row.split == "train" and row.label_name:
                path = relative_video_path(layouts[dataset]["template"], layouts[dataset]["subdir"], row)
                assert path not in train_paths, f"leaked id {row.youtube_id} in train"
