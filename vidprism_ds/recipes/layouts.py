"""Where a Kinetics video lives under the video root: naming templates and their auto-detection.

A layout is a ``str.format`` template relative to the dataset's folder (``<video root>/<subdir>``),
with the fields

- ``{dataset}`` (k400/k600/k700), ``{split}`` (train/val/test), ``{csv_split}`` (as the CSV writes it,
  e.g. ``validate``),
- ``{label}`` (the class name as the CSV writes it), ``{label_underscored}`` (spaces -> ``_``),
- ``{youtube_id}``, ``{start}``, ``{end}`` (integers: ``{start:06d}`` gives ``000014``).

Presets cover the usual download tools; ``auto`` tries each on a sample of a dataset's rows and keeps
the one that finds the most files (one layout per dataset, so a list never mixes conventions).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Sequence

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.kinetics_csv import AnnotationRow

LAYOUT_PRESETS = {
    # ActivityNet crawler: one folder per split and class.
    "nested": "{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4",
    # cvdfoundation/kinetics-dataset tarballs: one folder per split.
    "split-flat": "{split}/{youtube_id}_{start:06d}_{end:06d}.mp4",
    # One file per YouTube id, e.g. a shared pool of downloads.
    "flat": "{youtube_id}.mp4",
}
AUTO = "auto"
# How many rows per dataset auto-detection probes: enough to tell layouts apart, cheap on network disks.
DETECT_SAMPLE = 256


def _fields(row: AnnotationRow) -> dict[str, object]:
    label = row.label_name or ""
    return {
        "dataset": row.dataset, "split": row.split, "csv_split": row.csv_split,
        "label": label, "label_underscored": label.replace(" ", "_"),
        "youtube_id": row.youtube_id, "start": row.start, "end": row.end,
    }


def resolve_template(layout: str) -> str:
    """A preset name or a template; a template is checked by formatting a made-up row."""
    template = LAYOUT_PRESETS.get(layout, layout)
    probe = AnnotationRow("k400", "train", "train", "abcdefghijk", 1, 11, "air drumming", "probe", 0)
    try:
        rendered = template.format(**_fields(probe))
    except (KeyError, IndexError, ValueError) as err:
        known = ", ".join("{" + name + "}" for name in _fields(probe))
        raise RecipeError(f"--layout {layout!r} is not a preset ({', '.join(LAYOUT_PRESETS)}, auto) "
                          f"nor a valid template ({err!r}); template fields: {known}") from None
    if "abcdefghijk" not in rendered:
        raise RecipeError(f"--layout {layout!r} does not use {{youtube_id}}: every video would get the same file")
    if rendered.startswith("/"):
        raise RecipeError(f"--layout {layout!r} must be relative to the dataset folder, not absolute")
    return template


def relative_video_path(template: str, subdir: str, row: AnnotationRow) -> str:
    """The list path of ``row``: relative to the video root, '/'-separated."""
    return posixpath.normpath(posixpath.join(subdir, template.format(**_fields(row))))


def detect_layout(dataset: str, root: Path, subdir: str, rows: Sequence[AnnotationRow]) -> tuple[str, dict[str, int]]:
    """The preset that finds the most of a sample of ``rows`` on disk, and every preset's hit count.

    The sample is the first rows by YouTube id: ids are random strings, so this is an unbiased and
    reproducible sample. Ties go to the earlier preset. No hit at all is an error: a wrong root or
    subdir is far likelier than a dataset with no video downloaded.
    """
    sample = sorted(rows, key=lambda r: (r.youtube_id, r.order))[:DETECT_SAMPLE]
    hits = {
        name: sum((root / relative_video_path(template, subdir, row)).is_file() for row in sample)
        for name, template in LAYOUT_PRESETS.items()
    }
    best = max(LAYOUT_PRESETS, key=lambda name: hits[name])  # max keeps the first of equals
    if hits[best] == 0:
        tried = "; ".join(f"{n}: {t}" for n, t in LAYOUT_PRESETS.items())
        raise RecipeError(f"{dataset}: none of {len(sample)} sampled videos found under {root / subdir} "
                          f"with any layout ({tried}); check --video-root/--subdir or force one with --layout")
    return best, hits
