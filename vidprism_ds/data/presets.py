"""Dataset presets: label list, class count, direction sensitivity and default list format.

A preset is what the rest of the code needs to know about a public dataset without reading any video:

- ``label_file``: packaged class list under ``vidprism_ds/data/labels/`` (line N = class id N);
- ``num_classes``: length of that list (checked when it is loaded);
- ``direction_sensitive``: True where a horizontal flip changes the class ("pushing something from
  left to right" in SSv2, the synthetic direction classes), so augmentation must not flip;
- ``list_format``: the list format the dataset is usually distributed with (see
  ``vidprism_ds.data.video_lists``).

Files are read with ``importlib.resources`` so the lists work from an installed wheel as well as from a
checkout. Only the standard library is imported here: the config validation imports this module.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Optional

LABELS_PACKAGE = "vidprism_ds.data.labels"

# The synthetic dataset's classes; ``vidprism_ds.data.synthetic`` renders exactly these, in this order.
SYNTHETIC_CLASSES: tuple[str, ...] = (
    "moving right",
    "moving left",
    "right and back",
    "left and back",
)


@dataclass(frozen=True)
class DatasetPreset:
    name: str
    label_file: Optional[str]  # resource name inside LABELS_PACKAGE; None = built in (synthetic)
    num_classes: int
    direction_sensitive: bool
    list_format: str  # "path_label", "path_frames_label", "kinetics_csv" or "ssv2_json"


PRESETS: dict[str, DatasetPreset] = {
    p.name: p
    for p in (
        DatasetPreset("k400", "k400.txt", 400, False, "kinetics_csv"),
        DatasetPreset("k600", "k600.txt", 600, False, "kinetics_csv"),
        DatasetPreset("k700", "k700.txt", 700, False, "kinetics_csv"),
        DatasetPreset("k710", "k710.txt", 710, False, "path_label"),
        DatasetPreset("ucf101", "ucf101.txt", 101, False, "path_label"),
        DatasetPreset("hmdb51", "hmdb51.txt", 51, False, "path_label"),
        DatasetPreset("ssv2", "ssv2.txt", 174, True, "ssv2_json"),
        DatasetPreset("synthetic", None, len(SYNTHETIC_CLASSES), True, "path_label"),
    )
}

# "custom": any other dataset; its classes come from a label file the user gives.
CUSTOM = "custom"
DATASET_NAMES: tuple[str, ...] = tuple(PRESETS) + (CUSTOM,)

# Presets whose class list ships with the package (all but the built-in synthetic classes).
PACKAGED_LISTS: tuple[str, ...] = tuple(name for name, p in PRESETS.items() if p.label_file is not None)

# Datasets whose classes are rows of the Kinetics-710 head (k710_index_of_<name>.json).
K710_SUBSETS: tuple[str, ...] = ("k400", "k600", "k700")
# train.init_class_map for a dataset whose classes the K710 checkpoint has no rows for (UCF101, HMDB51,
# SSv2): the checkpoint's classifier is dropped and a new one is trained; every other weight loads.
FRESH_CLASSIFIER = "fresh"


def get_preset(name: str) -> DatasetPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset preset {name!r}; known: {', '.join(DATASET_NAMES)}") from None


def is_direction_sensitive(dataset: str) -> bool:
    """True for presets that must not be flipped (custom datasets choose with data.hflip; see
    ``effective_hflip``)."""
    return dataset in PRESETS and PRESETS[dataset].direction_sensitive


def effective_hflip(dataset: str, hflip: Optional[bool]) -> bool:
    """Whether training clips of ``dataset`` are flipped, given ``data.hflip`` (null = the preset decides:
    flip unless direction-sensitive). A direction-sensitive preset is never flipped, whatever ``hflip``
    says, and a custom dataset only with an explicit true (the config validation refuses null for it)."""
    if is_direction_sensitive(dataset):
        return False
    if hflip is None:
        return dataset != CUSTOM
    return hflip


def _read_resource_text(name: str) -> str:
    return resources.files(LABELS_PACKAGE).joinpath(name).read_text(encoding="utf-8")


# A row of an ``id,name`` class list: digits, then a comma.
_ID_NAME_ROW = re.compile(r"^\s*\d+\s*,")
_ID_NAME_HEADER = "id,name"
# A row of an ``id name`` class index as UCF101 and HMDB51 ship it (``classInd.txt``: ``1 ApplyEyeMakeup``).
_ID_SPACE_NAME_ROW = re.compile(r"^\s*(\d+)\s+(\S.*?)\s*$")


def parse_class_names(text: str, where: str = "label list") -> list[str]:
    """The class names, id order. Two layouts:

    - one class per line (line N = id N);
    - ``id,name`` CSV (``0,moving right``; ids 0..C-1 each once, in any order; an ``id,name`` header
      line is optional; names may be quoted), as some datasets ship their class index;
    - ``id name`` rows on every line (UCF101's ``classInd.txt``: ``1 ApplyEyeMakeup``): ids 1..C (UCF101's
      own numbering, read as 0..C-1) or 0..C-1, each once, in any order.

    Blank trailing lines are ignored; a blank line inside, a repeated name or a file that is only partly
    ``id,name`` rows is an error. ``where`` (a file name) starts the error message."""
    lines = text.rstrip("\r\n").splitlines()
    layout = _csv_layout(lines, where)
    if layout is not None:
        names = _parse_id_name_rows(lines, layout, where)
    elif lines and all(_ID_SPACE_NAME_ROW.match(line) for line in lines):
        rows = [_ID_SPACE_NAME_ROW.match(line).groups() for line in lines]
        names = _names_by_id({int(i): name for i, name in rows}, len(rows), where, first_ids=(0, 1))
    else:
        names = [line.strip() for line in lines]
    for line_no, name in enumerate(names, start=1):
        if not name:
            raise ValueError(f"{where}: line {line_no} is empty; a label list has one class name per line")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"{where}: duplicate class names (listed twice): {repeated[:3]}")
    return names


def _csv_layout(lines: list[str], where: str):
    """None: one name per line; True: ``id,name`` CSV with a header line; False: without one.

    Read as names, ``0,moving right`` would silently become the class called "0,moving right", so a file
    that looks like ``id,name`` rows is either read as such or refused, never read as names."""
    if not lines:
        return None
    if lines[0].replace(" ", "").lower() == _ID_NAME_HEADER:
        return True
    not_rows = [n for n, line in enumerate(lines, start=1) if not _ID_NAME_ROW.match(line)]
    if not not_rows:
        return False
    if not_rows == [1] and len(lines) > 1:
        raise ValueError(f"{where}: reads as id,name CSV, but line 1 ({lines[0].strip()!r}) is not the header "
                         f"{_ID_NAME_HEADER!r}")
    if not_rows[0] > 1:
        raise ValueError(f"{where}: line 1 is an id,name row, line {not_rows[0]} is not; write one class name "
                         "per line, or id,name on every line")
    return None


def _parse_id_name_rows(lines: list[str], has_header: bool, where: str) -> list[str]:
    first_line = 2 if has_header else 1
    by_id: dict[int, str] = {}
    for line_no, row in enumerate(csv.reader(lines[first_line - 1:]), start=first_line):
        if len(row) != 2 or not row[0].strip().isdigit():
            raise ValueError(f"{where}: line {line_no} is not an id,name row")
        class_id, name = int(row[0]), row[1].strip()
        if not name:
            raise ValueError(f"{where}: line {line_no}: id {class_id} has no name")
        if class_id in by_id:
            raise ValueError(f"{where}: line {line_no}: id {class_id} is listed twice")
        by_id[class_id] = name
    return _names_by_id(by_id, len(by_id), where)


def _names_by_id(by_id: dict[int, str], rows: int, where: str, first_ids: tuple[int, ...] = (0,)) -> list[str]:
    """The names in id order; the ids must be first..first+C-1 for one of ``first_ids``, each once."""
    for first in first_ids:
        if rows == len(by_id) and sorted(by_id) == list(range(first, first + rows)):
            return [by_id[i] for i in range(first, first + rows)]
    layout = "id,name" if first_ids == (0,) else "id name"
    expected = " or ".join(f"{first}..{first + rows - 1}" for first in first_ids)
    wrong = sorted(set(by_id) - set(range(first_ids[0], first_ids[-1] + rows)))
    raise ValueError(f"{where}: the ids of an {layout} list must be {expected}, each once; found "
                     f"{wrong[:3] or 'an id listed twice'} (ids start at {' or '.join(map(str, first_ids))})")


@lru_cache(maxsize=None)
def _preset_class_names(dataset: str) -> tuple[str, ...]:
    preset = get_preset(dataset)
    if preset.label_file is None:
        names = list(SYNTHETIC_CLASSES)
    else:
        names = parse_class_names(_read_resource_text(preset.label_file), f"packaged {preset.label_file}")
    if len(names) != preset.num_classes:
        raise ValueError(f"{preset.label_file}: {len(names)} classes, preset {dataset} expects {preset.num_classes}")
    return tuple(names)


def load_class_names(dataset: str, label_file: str | Path = "") -> list[str]:
    """The class list: ``label_file`` (names one a line, or ``id,name`` CSV: ``parse_class_names``) when
    given, else the preset's packaged list."""
    if label_file:
        # utf-8-sig: a spreadsheet's byte-order mark would otherwise become part of the first name
        return parse_class_names(Path(label_file).read_text(encoding="utf-8-sig"), str(label_file))
    if dataset == CUSTOM:
        raise ValueError("dataset 'custom' needs a label file")
    return list(_preset_class_names(dataset))


@lru_cache(maxsize=None)
def _k710_index(dataset: str) -> tuple[int, ...]:
    if dataset not in K710_SUBSETS:
        raise ValueError(f"no K710 index map for {dataset!r}; there is one for {', '.join(K710_SUBSETS)}")
    index = json.loads(_read_resource_text(f"k710_index_of_{dataset}.json"))
    expected, k710_classes = PRESETS[dataset].num_classes, PRESETS["k710"].num_classes
    # A broken map would silently mislabel videos, so check it before anything is built on it.
    if len(index) != expected or len(set(index)) != expected or not all(
        isinstance(row, int) and not isinstance(row, bool) and 0 <= row < k710_classes for row in index
    ):
        raise ValueError(f"k710_index_of_{dataset}.json is not a one-to-one map of {expected} classes "
                         f"into {k710_classes} rows")
    return tuple(index)


def load_k710_index(dataset: str) -> list[int]:
    """Entry i = the K710 row of class i of ``dataset`` (k400/k600/k700).

    Slice a 710-way head for that dataset with ``logits_710[:, index]`` (positional, never by name: the
    lists spell some classes differently).
    """
    return list(_k710_index(dataset))
