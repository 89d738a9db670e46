"""Reading Kinetics annotation CSVs (``label,youtube_id,time_start,time_end,split`` with a header).

Columns are found by header name, so extra columns (K400's ``is_cc``) are ignored and test CSVs
without a ``label`` column are fine. Splits are normalised: ``validate`` -> ``val``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from vidprism_ds.recipes.errors import RecipeError

SPLIT_NAMES = {"train": "train", "val": "val", "validate": "val", "test": "test"}
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end", "split")


@dataclass(frozen=True)
class AnnotationRow:
    dataset: str  # k400 / k600 / k700
    split: str  # train / val / test
    csv_split: str  # the split as written in the CSV (e.g. "validate")
    youtube_id: str
    start: int
    end: int
    label_name: Optional[str]  # None for unlabelled (test) rows
    where: str  # "file:line", for messages
    order: int  # position among this dataset's rows, so ties break by input order


def expand_csv_paths(paths: Iterable[str | Path], dataset: str) -> list[Path]:
    """Files as given, folders as their ``*.csv`` in name order; each file once."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            matches = sorted(path.glob("*.csv"))
            if not matches:
                raise RecipeError(f"{dataset}: folder {path} holds no .csv annotation file")
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        else:
            raise RecipeError(f"{dataset}: annotation CSV {path} not found")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _whole_seconds(text: str, where: str, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise RecipeError(f"{where}: {column} {text!r} is not a number") from None
    if not value.is_integer() or value < 0:
        raise RecipeError(f"{where}: {column} {text!r} is not a whole, non-negative number of seconds")
    return int(value)


def read_annotation_csv(path: Path, dataset: str, first_order: int = 0) -> list[AnnotationRow]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: cannot read annotation CSV ({err})") from None
    if not table:
        raise RecipeError(f"{path}: empty file; expected a header line 'label,youtube_id,time_start,time_end,split'")
    header = [name.strip() for name in table[0]]
    absent = [name for name in REQUIRED_COLUMNS if name not in header]
    if absent:
        raise RecipeError(f"{path}:1: header {header} lacks column(s) {absent}")
    column = {name: header.index(name) for name in header}
    rows = []
    for line_no, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        where = f"{path}:{line_no}"
        if len(cells) != len(header):
            raise RecipeError(f"{where}: {len(cells)} fields but the header has {len(header)} (unquoted comma?)")
        csv_split = cells[column["split"]].strip()
        split = SPLIT_NAMES.get(csv_split)
        if split is None:
            raise RecipeError(f"{where}: split {csv_split!r} is not one of {', '.join(SPLIT_NAMES)}")
        youtube_id = cells[column["youtube_id"]].strip()
        if not youtube_id:
            raise RecipeError(f"{where}: empty youtube_id")
        label = cells[column["label"]].strip() if "label" in column else ""
        if not label and split != "test":
            raise RecipeError(f"{where}: a {split} row needs a label")
        rows.append(AnnotationRow(
            dataset=dataset, split=split, csv_split=csv_split, youtube_id=youtube_id,
            start=_whole_seconds(cells[column["time_start"]].strip(), where, "time_start"),
            end=_whole_seconds(cells[column["time_end"]].strip(), where, "time_end"),
            label_name=label or None, where=where, order=first_order + len(rows),
        ))
    return rows


def read_dataset_annotations(paths: Iterable[str | Path], dataset: str) -> list[AnnotationRow]:
    """All rows of one dataset's CSVs, in file order then line order."""
    rows: list[AnnotationRow] = []
    for path in expand_csv_paths(paths, dataset):
        rows.extend(read_annotation_csv(path, dataset, first_order=len(rows)))
    return rows
