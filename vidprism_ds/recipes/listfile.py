"""The project's list format: ``relative/path label`` per line.

Paths may contain spaces, so the label is the last whitespace-separated token and everything before
it is kept verbatim (for an mmaction-style ``path num_frames label`` line that is ``path num_frames``;
the recipes here only read and rewrite the label, so both formats pass through unchanged). Blank lines
and lines starting with ``#`` are skipped, as the data loader does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from vidprism_ds.recipes.errors import RecipeError

_LINE = re.compile(r"^(\S.*?)\s+(\d+)$")


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
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        match = _LINE.match(text)
        if not match:
            raise RecipeError(f"{path}:{line_no}: expected 'relative/path label' (label a non-negative integer), got {text!r}")
        lines.append(ListLine(body=match.group(1), label=int(match.group(2)), line_no=line_no))
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
