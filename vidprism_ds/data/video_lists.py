"""Reading video list files into ``VideoEntry`` rows, in list order.

Formats (``list_format``):

- ``path_label``: ``relative/path label`` per line, the official format. Paths may contain spaces: the
  label is the last whitespace-separated token and the path is everything before it.
- ``path_frames_label``: ``relative/path num_frames label`` (mmaction-style); the frame count is only a
  hint and is not trusted.
- ``kinetics_csv``: ``label,youtube_id,time_start,time_end,split[,...]`` with a header row. The file of
  a row is found by its stem ``{youtube_id}_{start:06d}_{end:06d}`` (the name the Kinetics download
  tools write), or failing that a file named ``{youtube_id}``, with any video extension, anywhere under
  ``root``: the tree is indexed once, so class folders (``root/abseiling/...``,
  ``root/train/abseiling/...``) and flat folders both work. When several files share the stem, the one
  inside a folder named after the row's class (spaces or underscores) wins, then the first in sorted
  order. Label names are mapped to ids with the class list.
- ``ssv2_json``: Something-Something v2's JSON list of ``{"id", "template", "label", "placeholders"}``;
  the class is the template with ``[`` and ``]`` removed and the file is ``root/{id}.webm``.
- ``auto``: ``.csv`` -> kinetics_csv, ``.json`` -> ssv2_json, otherwise a text list whose columns are
  decided per line: if the line minus its last token ends in a video extension it is ``path label``;
  else if its last two tokens are integers it is ``path num_frames label``; else ``path label``.

Rows that cannot be used (unknown class name, label out of range, no file found) are kept as entries
with ``problem`` set, so that every row keeps its position (shard assignment depends on it) and the
sharder can report it as skipped. A malformed list (bad syntax) raises ``VideoListError`` naming the
file and line. Lists are UTF-8; a leading byte-order mark (spreadsheet exports) is dropped. A path
listed twice stays two rows (``repeated_paths`` finds them, so the sharder can warn).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

# Lists saved by spreadsheets and Windows editors start with a UTF-8 byte-order mark; plain "utf-8"
# would keep it as part of the first header name or path ("\ufefflabel"), so every reader of a list,
# CSV or JSON uses "utf-8-sig", which drops a leading mark and is plain UTF-8 otherwise.
LIST_ENCODING = "utf-8-sig"

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv")
LIST_FORMATS = ("auto", "path_label", "path_frames_label", "kinetics_csv", "ssv2_json")


class VideoListError(ValueError):
    """The list file cannot be read or parsed; the message names the file (and line)."""


@dataclass(frozen=True)
class VideoEntry:
    path: str  # file to decode (root joined with the list's path); may not exist
    label: int  # class id, -1 when unknown (then ``problem`` says why)
    video_id: str  # stable id written into the sample metadata
    line: int  # 1-based line (row) number in the list, for messages
    problem: Optional[str] = None  # why this row cannot be used, or None


def _has_video_extension(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def _label_problem(label: int, num_classes: Optional[int]) -> Optional[str]:
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else ">= 0"
        return f"label {label} out of range {bound}"
    return None


_TWO_COLUMNS = re.compile(r"^(.*\S)\s+(-?\d+)$")
_THREE_COLUMNS = re.compile(r"^(.*\S)\s+(-?\d+)\s+(-?\d+)$")


def list_rows(text: str) -> Iterator[tuple[int, str]]:
    """``(1-based line number, stripped line)`` of each row of a text list; blank lines and ``#``
    comments are not rows. The one definition of a row, shared with ``vidprism_ds.recipes.listfile``."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield line_no, stripped


def split_trailing_label(row: str) -> Optional[tuple[str, int]]:
    """``"a/clip 12.mp4 7"`` -> ``("a/clip 12.mp4", 7)``: the label is the last token and everything
    before it is kept verbatim (paths may contain spaces). None when the row does not end in an integer."""
    two = _TWO_COLUMNS.match(row.strip())
    return (two.group(1), int(two.group(2))) if two else None


def _parse_text_line(line: str, list_format: str, where: str) -> tuple[str, int]:
    stripped = line.strip()
    three = _THREE_COLUMNS.match(stripped)
    if list_format == "path_frames_label":
        if not three:
            raise VideoListError(f"{where}: expected 'path num_frames label', got {stripped!r}")
        return three.group(1), int(three.group(3))
    two = split_trailing_label(stripped)
    if two is None:
        raise VideoListError(f"{where}: expected 'path label' or 'path num_frames label', got {stripped!r}")
    # "a/b.mp4 300 7" is three columns; "a/clip 12.mp4 7" and "a/dir 7" are two.
    if list_format == "auto" and three and not _has_video_extension(two[0]):
        return three.group(1), int(three.group(3))
    return two


def _read_text_list(list_path: Path, root: Path, list_format: str, num_classes: Optional[int]) -> list[VideoEntry]:
    entries = []
    text = list_path.read_text(encoding=LIST_ENCODING)
    for line_no, line in list_rows(text):
        rel, label = _parse_text_line(line, list_format, f"{list_path}:{line_no}")
        entries.append(VideoEntry(path=str(root / rel), label=label, video_id=rel, line=line_no,
                                  problem=_label_problem(label, num_classes)))
    return entries


def repeated_paths(entries: Sequence[VideoEntry]) -> dict[str, list[int]]:
    """Path -> list lines of every usable path listed more than once, in first-listed order. Rows with
    a ``problem`` are left out: they are skipped anyway, so a repeat of one costs nothing."""
    lines: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        if entry.problem is None:
            lines[os.path.normpath(entry.path)].append(entry.line)
    return {path: found for path, found in lines.items() if len(found) > 1}


def _index_video_tree(root: Path) -> dict[str, list[str]]:
    """Stem -> relative paths of every video file under ``root`` (one walk, sorted for determinism)."""
    by_stem: dict[str, list[str]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if _has_video_extension(name):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                by_stem[os.path.splitext(name)[0]].append(rel)
    return by_stem


def _pick_kinetics_file(candidates: list[str], class_name: str) -> str:
    folders = {class_name, class_name.replace(" ", "_")}
    for rel in candidates:
        if Path(rel).parent.name in folders:
            return rel
    return candidates[0]


def _label_ids(class_names: Optional[Sequence[str]], names_in_list: list[str]) -> tuple[dict[str, int], list[str]]:
    """Name -> id. Without a class list, the sorted distinct names of this list become the classes."""
    if class_names is None:
        class_names = sorted(set(names_in_list))
    return {name: i for i, name in enumerate(class_names)}, list(class_names)


def _read_kinetics_csv(list_path: Path, root: Path, class_names: Optional[Sequence[str]]) -> tuple[list[VideoEntry], list[str]]:
    with list_path.open(newline="", encoding=LIST_ENCODING) as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise VideoListError(f"{list_path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("label", "youtube_id", "time_start", "time_end") if c not in header]
    if missing:
        raise VideoListError(f"{list_path}:1: CSV header {header} lacks column(s) {missing}")
    col = {name: header.index(name) for name in header}
    records = []
    for row_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise VideoListError(f"{list_path}:{row_no}: {len(row)} columns, header has {len(header)}")
        try:
            start, end = int(float(row[col["time_start"]])), int(float(row[col["time_end"]]))
        except ValueError:
            raise VideoListError(f"{list_path}:{row_no}: time_start/time_end are not numbers: {row}") from None
        records.append((row_no, row[col["label"]].strip(), row[col["youtube_id"]].strip(), start, end))
    ids, names = _label_ids(class_names, [r[1] for r in records])
    by_stem = _index_video_tree(root)
    entries = []
    for row_no, name, youtube_id, start, end in records:
        video_id = f"{youtube_id}_{start:06d}_{end:06d}"
        candidates = by_stem.get(video_id) or by_stem.get(youtube_id) or []
        path = str(root / _pick_kinetics_file(candidates, name)) if candidates else str(root / f"{video_id}.mp4")
        label = ids.get(name, -1)
        problem = None
        if label < 0:
            problem = f"class {name!r} not in the class list"
        elif not candidates:
            problem = f"no video file named {video_id}.* or {youtube_id}.* under {root}"
        entries.append(VideoEntry(path=path, label=label, video_id=video_id, line=row_no, problem=problem))
    return entries, names


def ssv2_class_name(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _read_ssv2_json(list_path: Path, root: Path, class_names: Optional[Sequence[str]]) -> tuple[list[VideoEntry], list[str]]:
    try:
        items = json.loads(list_path.read_text(encoding=LIST_ENCODING))
    except json.JSONDecodeError as err:
        raise VideoListError(f"{list_path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise VideoListError(f"{list_path}: expected a JSON list of objects with an 'id'")
    names_in_list = [ssv2_class_name(i["template"]) for i in items if "template" in i]
    ids, names = _label_ids(class_names, names_in_list)
    entries = []
    for position, item in enumerate(items, start=1):
        video_id = str(item["id"])
        name = ssv2_class_name(item["template"]) if "template" in item else None
        label = ids.get(name, -1) if name is not None else -1
        problem = None
        if name is None:
            problem = "no 'template' (unlabelled row)"
        elif label < 0:
            problem = f"class {name!r} not in the class list"
        entries.append(VideoEntry(path=str(root / f"{video_id}.webm"), label=label, video_id=video_id,
                                  line=position, problem=problem))
    return entries, names


def detect_list_format(list_path: str | Path) -> str:
    suffix = Path(list_path).suffix.lower()
    return {".csv": "kinetics_csv", ".json": "ssv2_json"}.get(suffix, "auto")


def read_video_list(list_path: str | Path, root: str | Path, list_format: str = "auto",
                    class_names: Optional[Sequence[str]] = None) -> tuple[list[VideoEntry], list[str]]:
    """Entries in list order and the class names (``class_names`` or, for name-labelled lists without
    one, the sorted names found in the list; for integer-labelled lists without one, an empty list)."""
    list_path, root = Path(list_path), Path(root)
    if list_format not in LIST_FORMATS:
        raise VideoListError(f"unknown list format {list_format!r}; choose from {', '.join(LIST_FORMATS)}")
    if not list_path.is_file():
        raise VideoListError(f"{list_path}: list file not found")
    try:
        if list_format == "auto":
            list_format = detect_list_format(list_path)
        if list_format == "kinetics_csv":
            return _read_kinetics_csv(list_path, root, class_names)
        if list_format == "ssv2_json":
            return _read_ssv2_json(list_path, root, class_names)
        num_classes = len(class_names) if class_names is not None else None
        return _read_text_list(list_path, root, list_format, num_classes), list(class_names or [])
    except (OSError, UnicodeDecodeError) as err:
        raise VideoListError(f"{list_path}: cannot read list ({err})") from None
