"""Writing the K710 build: list files, the missing-video list, a JSON summary and a printable table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from vidprism_ds.recipes.kinetics import COUNTERS, OUTPUT_SPLITS, K710Lists
from vidprism_ds.recipes.labels import K710_CLASSES, packaged_label_list
from vidprism_ds.recipes.listfile import write_list

# Sizes of the published K710 lists (the k710 train/val lists released with VideoMAE V2, docs/DATASET.md).
# Printed beside ours so that a build missing a large share of videos is obvious at a glance; ours are
# expected to be somewhat smaller, since some YouTube videos can no longer be downloaded.
PUBLISHED_SIZES = {"train": 658_340, "val": 66_803}
EMPTY_CLASSES_SHOWN = 3  # class names quoted in the warning; the summary JSON lists them all

OUTPUT_NAMES = {
    "train": "k710_train.txt",
    "val": "k710_val.txt",
    "missing": "k710_missing.tsv",
    "summary": "k710_summary.json",
}


def totals(result: K710Lists) -> dict[str, dict[str, int]]:
    return {split: {c: sum(per[c] for per in result.counts[split].values()) for c in COUNTERS}
            for split in OUTPUT_SPLITS}


def summary_dict(result: K710Lists, video_root: str, outputs: dict[str, str]) -> dict:
    return {
        "video_root": video_root,
        "precedence": list(result.precedence),
        "layouts": result.layouts,
        "counts": {split: {**result.counts[split], "total": totals(result)[split]} for split in OUTPUT_SPLITS},
        "written": {"train": len(result.train), "val": len(result.val)},
        "eval_ids": result.eval_ids,
        "missing": len(result.missing),
        "conflicts": result.conflicts,
        "unknown_labels": result.unknown_labels,
        "warnings": result.warnings,
        "empty_classes": result.empty_classes,
        "published": PUBLISHED_SIZES,
        "outputs": outputs,
    }


def write_outputs(result: K710Lists, out_dir: str | Path, video_root: str) -> dict[str, str]:
    """Write the four files under ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: str(out_dir / file_name) for name, file_name in OUTPUT_NAMES.items()}
    write_list(outputs["train"], result.train)
    write_list(outputs["val"], result.val)
    with open(outputs["missing"], "w", newline="", encoding="utf-8") as handle:
        # TSV, because list paths may contain spaces (class folders) but never tabs.
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["dataset", "split", "youtube_id", "path"])
        for item in result.missing:
            writer.writerow([item.dataset, item.split, item.youtube_id, item.path])
    summary = summary_dict(result, video_root, outputs)
    Path(outputs["summary"]).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return outputs


def format_summary(result: K710Lists, outputs: dict[str, str]) -> str:
    layouts = ", ".join(f"{d} {info['layout']}" for d, info in result.layouts.items())
    lines = [f"K710 lists (precedence {' > '.join(result.precedence)}; layouts: {layouts})"]
    widths = {name: max(len(name), 6) + 2 for name in COUNTERS}
    header = f"{'split':<6}{'dataset':<8}" + "".join(f"{c:>{widths[c]}}" for c in COUNTERS)
    lines.append(header)
    all_totals = totals(result)
    for split in OUTPUT_SPLITS:
        for dataset, c in {**result.counts[split], "total": all_totals[split]}.items():
            lines.append(f"{split:<6}{dataset:<8}" + "".join(f"{c[name]:>{widths[name]}}" for name in COUNTERS))
    lines.append(f"label conflicts: {len(result.conflicts)} (ids whose rows map to different K710 classes; listed in the summary JSON)")
    if result.unknown_labels:
        skipped = sum(sum(names.values()) for names in result.unknown_labels.values())
        lines.append(f"skipped {skipped} rows with labels not in their dataset's list (--lenient); listed in the summary JSON")
    lines.extend(f"warning: {w}" for w in result.warnings)
    lines.extend(_empty_class_warnings(result))
    for split in OUTPUT_SPLITS:
        lines.append(f"{split}: {_size_beside_published(split, len(getattr(result, split)))} -> {outputs[split]}")
    lines.append(f"missing: {len(result.missing)} videos -> {outputs['missing']}")
    lines.append(f"summary -> {outputs['summary']}")
    return "\n".join(lines)


def _size_beside_published(split: str, written: int) -> str:
    published = PUBLISHED_SIZES[split]
    return f"{written:,} videos (published K710 {split}: {published:,}; {100 * written / published:.1f}% of it)"


def _empty_class_warnings(result: K710Lists) -> list[str]:
    names = packaged_label_list("k710")
    lines = []
    for split in OUTPUT_SPLITS:
        empty = result.empty_classes.get(split, [])
        if empty:
            shown = ", ".join(f"{row} {names[row]!r}" for row in empty[:EMPTY_CLASSES_SHOWN])
            more = ", ..." if len(empty) > EMPTY_CLASSES_SHOWN else ""
            lines.append(f"warning: {split} leaves {len(empty)} of {K710_CLASSES} K710 classes without a video "
                         f"({shown}{more}; all in the summary JSON, empty_classes)")
    return lines
