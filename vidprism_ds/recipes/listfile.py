"""The project's list format: ``relative/path label`` per line.

Paths may contain spaces, so the label is the last whitespace-separated token and everything before
it is kept verbatim (for an mmaction-style ``path num_frames label`` line that is ``path num_frames``;
the recipes here only read and rewrite the label, so both formats pass through unchanged). What a row
is (blank lines and ``#`` comments are not) and how its label is split off come from the data
loader's reader, ``vidprism_ds.data.video_lists``, so the two always agree (its encoding too: a
leading byte-order mark is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from vidprism_ds.data.video_lists import LIST_ENCODING, list_rows, split_trailing_label
from vidprism_ds.recipes.errors import RecipeError


@dataclass(frozen=True)
class ListLine:
    body: str  # the line without its label: the path (or "path num_frames")
    label: int
    line_no: int  # 1-based, for messages


def read_list(path: str | Path) -> list[ListLine]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: list file not found")
    lines = []
    for line_no, text in list_rows(path.read_text(encoding=LIST_ENCODING)):
        split = split_trailing_label(text)
        if split is None or split[1] < 0:
            raise RecipeError(f"{path}:{line_no}: expected 'relative/path label' (label a non-negative integer), got {text!r}")
        lines.append(ListLine(body=split[0], label=split[1], line_no=line_no))
    return lines


def format_line(body: str, label: int) -> str:
    # A path that starts or ends with whitespace, or holds a line break, would not read back the same.
    if body != body.strip() or "\n" in body or "\r" in body or not body:
        raise RecipeError(f"path {body!r} cannot be written to a list file (empty, line break or edge whitespace)")
    if label < 0:
        raise RecipeError(f"{body}: negative label {label}")
    return f"{body} {label}\n"


def write_list(path: str | Path, rows: Iterable[tuple[str, int]]) -> int:
    """Write ``(path, label)`` rows; returns how many. The parent folder is created."""
    path = Path(path)
    text = "".join(format_line(body, label) for body, label in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text.count("\n")
