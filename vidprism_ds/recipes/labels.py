"""The recipes' view of the packaged label lists and Kinetics-710 index maps.

``vidprism_ds.data.presets`` owns the lists and maps (reading, parsing, checking); this module only
names them the way the recipes use them and turns their errors into ``RecipeError``, which the
recipes' command lines print as one line. A label list is one class name per line, line i = class i.
The K710 index maps are positional (entry i = the K710 row of class i of that dataset): the lists
spell some classes differently ("balloon blowing" in K400 is row "inflating balloons" in K710), so
lists are never joined by name.
"""

from __future__ import annotations

from pathlib import Path

from vidprism_ds.data import presets
from vidprism_ds.recipes.errors import RecipeError

PACKAGED_LISTS = presets.PACKAGED_LISTS
KINETICS_SUBSETS = presets.K710_SUBSETS
K710_CLASSES = presets.get_preset("k710").num_classes


def packaged_label_list(name: str) -> tuple[str, ...]:
    """The packaged class names of dataset ``name`` (k400, k600, k700, k710, ucf101, hmdb51, ssv2)."""
    if name not in PACKAGED_LISTS:
        raise RecipeError(f"no packaged label list {name!r}; known: {', '.join(PACKAGED_LISTS)}")
    try:
        return tuple(presets.load_class_names(name))
    except ValueError as err:
        raise RecipeError(str(err)) from None


def load_label_list(name_or_path: str | Path) -> tuple[str, ...]:
    """A packaged list by dataset name, or a label file by path."""
    if str(name_or_path) in PACKAGED_LISTS:
        return packaged_label_list(str(name_or_path))
    path = Path(name_or_path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such label file (and not a packaged list: {', '.join(PACKAGED_LISTS)})")
    try:
        return tuple(presets.load_class_names(presets.CUSTOM, path))
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text ({err.reason})") from None
    except ValueError as err:
        raise RecipeError(str(err)) from None


def k710_index_map(dataset: str) -> tuple[int, ...]:
    """Entry i = the K710 row of class i of ``dataset`` (k400, k600 or k700); checked one-to-one."""
    try:
        return tuple(presets.load_k710_index(dataset))
    except ValueError as err:
        raise RecipeError(str(err)) from None
