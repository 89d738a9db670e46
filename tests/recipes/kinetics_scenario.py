"""A small Kinetics download, made on disk: three datasets' annotation CSVs and a video root.

Each dataset uses a different file layout (K400 nested class folders, K600 split folders, K700 one
flat folder), so auto-detection has to tell them apart. The rows cover every rule of the K710 build;
the comment on each row says what must happen to it under the default precedence K700 > K600 > K400.
Times are 10..20 s for every row. ``on_disk=False`` rows get no video file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

LAYOUTS = {
    "k400": "{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4",
    "k600": "{split}/{youtube_id}_{start:06d}_{end:06d}.mp4",
    "k700": "{youtube_id}.mp4",
}
LAYOUT_NAMES = {"k400": "nested", "k600": "split-flat", "k700": "flat"}


@dataclass(frozen=True)
class Row:
    dataset: str
    split: str  # as written in the CSV
    youtube_id: str
    label: str = ""
    on_disk: bool = True


ROWS = [
    # K400 train
    Row("k400", "train", "yt_A1", "abseiling"),                  # kept
    Row("k400", "train", "yt_A2", "balloon blowing"),            # duplicate: K600 yt_A2 outranks it
    Row("k400", "train", "yt_A3", "air drumming"),               # leak: yt_A3 is in K600 val
    Row("k400", "train", "yt_A4", "air drumming", on_disk=False),  # missing
    Row("k400", "train", "yt_A5", "abseiling"),                  # leak: yt_A5 is in K700 test
    Row("k400", "train", "yt_A6", "abseiling"),                  # kept
    Row("k400", "train", "yt_A6", "abseiling"),                  # duplicate within K400
    Row("k400", "train", "yt_A7", "drinking"),                   # duplicate + label conflict with K700 "archery"
    Row("k400", "train", "yt_A8", "archery"),                    # kept: the K700 copy is not on disk
    Row("k400", "train", "yt_A9", "balloon blowing"),            # kept, renamed class -> K710 "inflating balloons"
    # K400 val and test
    Row("k400", "val", "yt_V1", "abseiling"),                    # kept
    Row("k400", "val", "yt_V2", "air drumming"),                 # duplicate: K600 yt_V2 outranks it
    Row("k400", "val", "yt_V4", "abseiling", on_disk=False),     # missing
    Row("k400", "test", "yt_B3", "abseiling"),                   # only removes K600 train yt_B3
    # K600 train ("validate" is K600's spelling of the val split)
    Row("k600", "train", "yt_A2", "inflating balloons"),         # kept (K600 class 229 -> K710 row 12)
    Row("k600", "train", "yt_B1", "passing American football (not in game)"),  # kept; list spells it "american"
    Row("k600", "train", "yt_B2", "acting in play"),             # kept, a K600-only class
    Row("k600", "train", "yt_B3", "archery"),                    # leak: yt_B3 is in K400 test
    Row("k600", "validate", "yt_A3", "air drumming"),            # kept
    Row("k600", "validate", "yt_V2", "air drumming"),            # kept
    Row("k600", "test", "yt_T6"),                                # test row, no label
    # K700 train
    Row("k700", "train", "yt_A7", "archery"),                    # kept, wins the conflict
    Row("k700", "train", "yt_A8", "archery", on_disk=False),     # duplicate: falls back to the K400 copy
    Row("k700", "train", "yt_C1", "throwing ball (not baseball or American football)"),  # kept, K710 "throwing ball"
    Row("k700", "train", "yt_C2", "abseiling", on_disk=False),   # missing
    Row("k700", "validate", "yt_V3", "abseiling"),               # kept
    Row("k700", "test", "yt_A5"),                                # test row, no label
]

# K710 rows by hand from the packaged maps (k710_index_of_*.json), not by name.
K710 = {"abseiling": 0, "air drumming": 1, "archery": 5, "inflating balloons": 12, "sipping cup": 100,
        "passing American football (not in game)": 209, "throwing ball": 357, "acting in play": 661}

EXPECTED_COUNTS = {
    "train": {
        "k400": {"rows": 10, "kept": 4, "duplicates": 3, "leaks": 2, "missing": 1, "unknown_label": 0},
        "k600": {"rows": 4, "kept": 3, "duplicates": 0, "leaks": 1, "missing": 0, "unknown_label": 0},
        "k700": {"rows": 4, "kept": 2, "duplicates": 1, "leaks": 0, "missing": 1, "unknown_label": 0},
    },
    "val": {
        "k400": {"rows": 3, "kept": 1, "duplicates": 1, "leaks": 0, "missing": 1, "unknown_label": 0},
        "k600": {"rows": 2, "kept": 2, "duplicates": 0, "leaks": 0, "missing": 0, "unknown_label": 0},
        "k700": {"rows": 1, "kept": 1, "duplicates": 0, "leaks": 0, "missing": 0, "unknown_label": 0},
    },
}

EXPECTED_TRAIN = {  # youtube id -> (dataset whose file is listed, K710 label)
    "yt_A1": ("k400", K710["abseiling"]), "yt_A6": ("k400", K710["abseiling"]),
    "yt_A8": ("k400", K710["archery"]), "yt_A9": ("k400", K710["inflating balloons"]),
    "yt_A2": ("k600", K710["inflating balloons"]),
    "yt_B1": ("k600", K710["passing American football (not in game)"]),
    "yt_B2": ("k600", K710["acting in play"]),
    "yt_A7": ("k700", K710["archery"]), "yt_C1": ("k700", K710["throwing ball"]),
}
EXPECTED_VAL = {
    "yt_V1": ("k400", K710["abseiling"]), "yt_A3": ("k600", K710["air drumming"]),
    "yt_V2": ("k600", K710["air drumming"]), "yt_V3": ("k700", K710["abseiling"]),
}
EXPECTED_MISSING = {("k400", "train", "yt_A4"), ("k700", "train", "yt_C2"), ("k400", "val", "yt_V4")}
EXPECTED_EVAL_IDS = 8  # V1 V2 V4 B3 A3 T6 V3 A5


def video_path(row: Row) -> str:
    split = {"validate": "val"}.get(row.split, row.split)
    return f"{row.dataset}/" + LAYOUTS[row.dataset].format(
        split=split, label=row.label, youtube_id=row.youtube_id, start=10, end=20)


def write_scenario(base: Path, rows=ROWS) -> tuple[dict[str, Path], Path]:
    """Write the CSVs (one folder per dataset, one file per split) and the videos; returns (csv folders, root)."""
    ann, root = base / "annotations", base / "videos"
    root.mkdir(parents=True, exist_ok=True)
    folders = {}
    for dataset in ("k400", "k600", "k700"):
        folders[dataset] = ann / dataset
        folders[dataset].mkdir(parents=True, exist_ok=True)
        for split in sorted({r.split for r in rows if r.dataset == dataset}):
            split_rows = [r for r in rows if r.dataset == dataset and r.split == split]
            labelled = any(r.label for r in split_rows)
            # K400 CSVs carry an extra is_cc column; unlabelled test CSVs have no label column at all.
            header = (["label"] if labelled else []) + ["youtube_id", "time_start", "time_end", "split"]
            header += ["is_cc"] if dataset == "k400" else []
            with open(folders[dataset] / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                for r in split_rows:
                    cells = ([r.label] if labelled else []) + [r.youtube_id, "10", "20", r.split]
                    writer.writerow(cells + (["0"] if dataset == "k400" else []))
    for r in rows:
        if r.on_disk and r.split in ("train", "val", "validate"):
            path = root / video_path(r)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    return folders, root
