"""Reading Kinetics annotation CSVs (``label,youtube_id,time_start,time_end,split`` with a header).

Columns are found by header name, so extra columns (K400's ``is_cc``) are ignored and test CSVs
without a ``label`` column are fine. Splits are normalised: ``validate`` -> ``val``. Files are read as
UTF-8 with a leading byte-order mark dropped (spreadsheets save one).

A folder stands for its annotation files: every ``*.csv``, and every ``*.txt`` whose first line is an
annotation header. The ``.txt`` files matter for K600: CVDF publishes its complete train/val
annotations as ``train.txt``/``val.txt`` (CSV text) and, beside them, ``train.csv``/``val.csv`` that
miss many rows (cvdfoundation/kinetics-dataset#33; its own download script fetches only the ``.txt``).
So where a folder holds both ``NAME.txt`` and ``NAME.csv``, the ``.txt`` is read and the ``.csv``
skipped. Every file a folder holds but that is not read is reported in ``notes``, never dropped silently.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from vidprism_ds.data.video_lists import LIST_ENCODING
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


def _is_annotation_table(path: Path) -> bool:
    """Whether the first line of ``path`` is a header with the required columns. Text that is not
    UTF-8 CSV cannot be a table: it is a readme or some other file, not an error of the annotations."""
    try:
        with path.open(newline="", encoding=LIST_ENCODING) as handle:
            header = [name.strip() for name in next(csv.reader(handle), [])]
    except (UnicodeDecodeError, csv.Error):
        return False
    except OSError as err:
        raise RecipeError(f"{path}: cannot read annotation file ({err})") from None
    return all(name in header for name in REQUIRED_COLUMNS)


def _folder_files(folder: Path, dataset: str, notes: list[str]) -> list[Path]:
    """The annotation files of ``folder`` in name order (module docstring), noting the ones left out."""
    csv_files = {path.stem: path for path in sorted(folder.glob("*.csv")) if path.is_file()}
    txt_tables = {}
    for path in sorted(folder.glob("*.txt")):
        if not path.is_file():
            continue
        if _is_annotation_table(path):
            txt_tables[path.stem] = path
        else:
            notes.append(f"{dataset}: {path} not read: not an annotation table (its first line lacks "
                         f"{', '.join(REQUIRED_COLUMNS)})")
    for stem in sorted(set(csv_files) & set(txt_tables)):
        notes.append(f"{dataset}: read {txt_tables[stem]}, not {csv_files.pop(stem).name} beside it "
                     "(a .txt next to a .csv of the same name is taken as the complete one: CVDF's K600 "
                     "train/val .csv files are incomplete)")
    found = sorted([*csv_files.values(), *txt_tables.values()], key=lambda path: path.name)
    if not found:
        raise RecipeError(f"{dataset}: folder {folder} holds no annotation file (*.csv, or *.txt whose "
                          f"first line names the columns {','.join(REQUIRED_COLUMNS)})")
    return found


def expand_annotation_paths(paths: Iterable[str | Path], dataset: str,
                            notes: Optional[list[str]] = None) -> list[Path]:
    """Files as given (any name, read as CSV text), folders as their annotation files; each file once.
    Files a folder holds but that are not read are described in ``notes`` when given."""
    notes = [] if notes is None else notes
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(_folder_files(path, dataset, notes))
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
        with path.open(newline="", encoding=LIST_ENCODING) as handle:
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


def read_dataset_annotations(paths: Iterable[str | Path], dataset: str,
                             notes: Optional[list[str]] = None) -> list[AnnotationRow]:
    """All rows of one dataset's CSVs, in file order then line order; ``notes`` as in
    ``expand_annotation_paths``."""
    rows: list[AnnotationRow] = []
    for path in expand_annotation_paths(paths, dataset, notes):
        rows.extend(read_annotation_csv(path, dataset, first_order=len(rows)))
    return rows
