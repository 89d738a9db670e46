"""Packaged label lists and Kinetics-710 index maps (``vidprism_ds/data/labels``).

Read with ``importlib.resources`` so they work from an installed wheel as well as from a checkout.
A label list is one class name per line, line i = class i. The K710 index maps are positional
(entry i = the K710 row of class i of that dataset): the lists spell some classes differently
("balloon blowing" in K400 is row "inflating balloons" in K710), so lists are never joined by name.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from vidprism_ds.recipes.errors import RecipeError

PACKAGED_LISTS = ("k400", "k600", "k700", "k710", "ucf101", "hmdb51", "ssv2")
KINETICS_SUBSETS = ("k400", "k600", "k700")
K710_CLASSES = 710


def _read_packaged(file_name: str) -> str:
    return (resources.files("vidprism_ds.data") / "labels" / file_name).read_text(encoding="utf-8")


def parse_label_list(text: str, where: str) -> tuple[str, ...]:
    """Class names, one a line; trailing blank lines are dropped, an empty or repeated name is an error."""
    names = tuple(line.strip() for line in text.rstrip("\r\n").splitlines())
    for i, name in enumerate(names):
        if not name:
            raise RecipeError(f"{where}: line {i + 1} is empty; a label list has one class name per line")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise RecipeError(f"{where}: class name(s) listed twice: {repeated[:3]}")
    return names


@lru_cache(maxsize=None)
def packaged_label_list(name: str) -> tuple[str, ...]:
    """The packaged class names of dataset ``name`` (k400, k600, k700, k710, ucf101, hmdb51, ssv2)."""
    if name not in PACKAGED_LISTS:
        raise RecipeError(f"no packaged label list {name!r}; known: {', '.join(PACKAGED_LISTS)}")
    return parse_label_list(_read_packaged(f"{name}.txt"), f"packaged {name}.txt")


def load_label_list(name_or_path: str | Path) -> tuple[str, ...]:
    """A packaged list by dataset name, or a label file by path."""
    if str(name_or_path) in PACKAGED_LISTS:
        return packaged_label_list(str(name_or_path))
    path = Path(name_or_path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such label file (and not a packaged list: {', '.join(PACKAGED_LISTS)})")
    return parse_label_list(path.read_text(encoding="utf-8"), str(path))


@lru_cache(maxsize=None)
def k710_index_map(dataset: str) -> tuple[int, ...]:
    """Entry i = the K710 row of class i of ``dataset`` (k400, k600 or k700); checked one-to-one."""
    if dataset not in KINETICS_SUBSETS:
        raise RecipeError(f"no K710 index map for {dataset!r}; there is one for {', '.join(KINETICS_SUBSETS)}")
    index = tuple(json.loads(_read_packaged(f"k710_index_of_{dataset}.json")))
    expected = len(packaged_label_list(dataset))
    # A broken map would silently mislabel videos, so check it before anything is built on it.
    if len(index) != expected or len(set(index)) != expected or not all(
        isinstance(row, int) and 0 <= row < K710_CLASSES for row in index
    ):
        raise RecipeError(f"k710_index_of_{dataset}.json is not a one-to-one map of {expected} classes into 710 rows")
    return index
