"""One big list sharded as N independent slices (a SLURM array job), then one manifest over all of them.

``data_prep/shard.py`` shards a whole list in one process tree; a list of 650k Kinetics videos is better
spread over many machines. This module adds the two missing pieces without changing the sharder:

``python -m vidprism_ds.data.prep.slices shard --slice I/N [every data_prep/shard.py option]``
    reads the *whole* list (so class ids, which a Kinetics CSV derives from all its rows, are the same
    in every slice), keeps slice I of N and shards it into ``OUT/slices/slice-IIIII-of-NNNNN/`` with
    the sharder's own engine (atomic shards, resume after a kill, settings check). Slices are contiguous
    row ranges cut at multiples of ``--shard-size``, so they depend only on the list, N and the shard size.

``python -m vidprism_ds.data.prep.slices merge --out OUT [--slices N] [--if-complete]``
    checks that all N slices finished and were made from the same list with the same settings, then
    writes ``OUT/manifest.json`` listing every slice's shards (names relative to OUT) with list-wide row
    numbers, so the loaders read OUT like the output of a single ``shard.py`` run. ``--if-complete``
    turns "some slices are not finished yet" into a message and exit 0: every array task calls merge
    after its slice, and the last one to finish writes the manifest.

Sample keys inside a slice's tar files count rows from the slice's start (the sharder numbers the rows
it was given); nothing reads keys across shards, and the merged manifest carries the global rows.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.data.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
from vidprism_ds.data.prep import cli
from vidprism_ds.data.prep.run import SettingsMismatch, count_reasons, run_sharding
from vidprism_ds.data.prep.writer import REPORTS_DIR, write_json_atomically
from vidprism_ds.data.video_lists import VideoListError

SLICES_DIR = "slices"
SLICE_DIR_PATTERN = re.compile(r"^slice-(\d{5})-of-(\d{5})$")
# Keys every slice must agree on for their union to be one dataset.
SHARED_KEYS = ("dataset", "classes", "num_classes", "frame_settings", "shard_size")
EXIT_USAGE = 2


class SliceError(ValueError):
    pass


def parse_slice(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise SliceError(f"--slice {text!r}: expected I/N, e.g. 3/16")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise SliceError(f"--slice {text}: need N >= 1 and 0 <= I < N")
    return index, count


def slice_rows(rows: int, shard_size: int, index: int, count: int) -> tuple[int, int]:
    """List rows [start, stop) of slice ``index`` of ``count``: whole shards, spread as evenly as possible
    (slice sizes differ by at most one shard; with more slices than shards some slices are empty)."""
    num_shards = -(-rows // shard_size)
    first, last = (index * num_shards) // count, ((index + 1) * num_shards) // count
    return min(rows, first * shard_size), min(rows, last * shard_size)


def slice_dir_name(index: int, count: int) -> str:
    return f"slice-{index:05d}-of-{count:05d}"


# ------------------------------------------------------------------------------------------------ shard


def shard_slice(argv: Sequence[str]) -> int:
    parser = cli.build_parser()
    parser.prog = "slices.py shard"
    parser.description = "Shard slice I of N of a video list into OUT/slices/ (then: slices.py merge --out OUT)."
    parser.add_argument("--slice", required=True, dest="slice_spec", metavar="I/N",
                        help="which contiguous part of the list to shard (0-based I)")
    args = parser.parse_args(argv)
    try:
        index, count = parse_slice(args.slice_spec)
        job = cli.build_job(args)  # the whole list: class ids and the list's sha256 are list-wide
        total = len(job.entries)
        start, stop = slice_rows(total, args.shard_size, index, count)
        job.entries = job.entries[start:stop]
        job.out_dir = Path(args.out) / SLICES_DIR / slice_dir_name(index, count)
        job.source = {**job.source, "slice": {"index": index, "count": count, "rows": [start, stop],
                                              "total_rows": total}}
        print(f"slice {index}/{count}: list rows [{start}, {stop}) of {total} -> {job.out_dir}", flush=True)
        summary = run_sharding(job, progress=not args.no_progress)
    except (SliceError, cli.UsageError, VideoListError, SettingsMismatch) as err:
        print(f"slices.py shard: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.text())
    if stop > start and summary.samples == 0:
        print(f"slices.py shard: error: no video of this slice could be written (is --root {args.root} right?)",
              file=sys.stderr)
        return EXIT_USAGE
    return 0


# ------------------------------------------------------------------------------------------------ merge


def _finished_slices(out_dir: Path) -> dict[int, dict[int, dict]]:
    """{N: {I: slice manifest}} for every slice directory whose manifest exists (= finished)."""
    found: dict[int, dict[int, dict]] = {}
    root = out_dir / SLICES_DIR
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        match = SLICE_DIR_PATTERN.match(path.name)
        if match is None or not path.is_dir():
            continue
        index, count = int(match.group(1)), int(match.group(2))
        found.setdefault(count, {})
        manifest = path / MANIFEST_NAME
        if manifest.is_file():
            found[count][index] = json.loads(manifest.read_text(encoding="utf-8"))
    return found


def merge_slices(out_dir: Path, count: Optional[int] = None) -> tuple[Optional[dict], list[int]]:
    """(merged manifest, []) when all slices are finished, else (None, missing slice indices).

    Raises SliceError when the slices cannot form one dataset (other list, settings or slice count)."""
    if (out_dir / REPORTS_DIR).is_dir():
        raise SliceError(f"{out_dir} holds shards of a single data_prep/shard.py run; merge only writes the "
                         f"manifest of a directory whose shards are all under {SLICES_DIR}/")
    found = _finished_slices(out_dir)
    if count is None:
        if len(found) != 1:
            raise SliceError(f"{out_dir / SLICES_DIR}: " + (
                "no slice directories" if not found else
                f"slices of different counts N = {sorted(found)}; pass --slices N"))
        count = next(iter(found))
    done = found.get(count, {})
    missing = [i for i in range(count) if i not in done]
    if missing:
        return None, missing
    first = done[0]
    reference_source = {k: v for k, v in first["source"].items() if k != "slice"}
    shards, skipped, expected_start = [], [], 0
    for index in range(count):
        part = done[index]
        name = slice_dir_name(index, count)
        for key in SHARED_KEYS:
            if part.get(key) != first.get(key):
                raise SliceError(f"{name}: {key} differs from slice 0's; the slices were made with other "
                                 "settings or lists, re-shard them into a fresh --out")
        source = part.get("source", {})
        spec = source.get("slice", {})
        if {k: v for k, v in source.items() if k != "slice"} != reference_source:
            raise SliceError(f"{name}: made from another list (source {source.get('list')}, sha256 "
                             f"{source.get('sha256')}) than slice 0")
        start, stop = spec.get("rows", [None, None])
        if start != expected_start or spec.get("count") != count or spec.get("index") != index:
            raise SliceError(f"{name}: covers rows {spec.get('rows')} but rows from {expected_start} were "
                             "expected; the slices do not tile the list")
        expected_start = stop
        for shard in part["shards"]:
            local = shard["rows"]
            shards.append({**shard, "name": f"{SLICES_DIR}/{name}/{shard['name']}",
                           "rows": [local[0] + start, local[1] + start]})
        skipped += [{**item, "index": item["index"] + start} for item in part.get("skipped", [])]
    total = first["source"]["slice"]["total_rows"]
    if expected_start != total:
        raise SliceError(f"the slices cover rows [0, {expected_start}) of {total}")
    merged = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        **{key: first[key] for key in SHARED_KEYS},
        "source": {**reference_source, "slices": count},
        "shards": shards,
        "num_samples": sum(s["samples"] for s in shards),
        "num_videos_listed": total,
        "skipped": skipped,
        "skipped_by_reason": dict(count_reasons(skipped)),
    }
    return merged, []


def merge_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="slices.py merge",
                                     description="Write OUT/manifest.json over the finished slices of OUT/slices/.")
    parser.add_argument("--out", required=True, help="the --out given to every slice")
    parser.add_argument("--slices", type=int, default=None, help="N (default: the only N found)")
    parser.add_argument("--if-complete", action="store_true",
                        help="unfinished slices are not an error: print how many remain and exit 0")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    try:
        merged, missing = merge_slices(out_dir, args.slices)
    except SliceError as err:
        print(f"slices.py merge: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        message = f"{len(missing)} slice(s) not finished yet: {shown}"
        if args.if_complete:
            print(f"slices.py merge: {message}; the last slice to finish writes the manifest")
            return 0
        print(f"slices.py merge: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    write_json_atomically(out_dir / MANIFEST_NAME, merged)
    print(f"slices.py merge: {out_dir / MANIFEST_NAME}: {merged['num_samples']} samples of "
          f"{merged['num_videos_listed']} listed videos in {len(merged['shards'])} shards from "
          f"{merged['source']['slices']} slices, {len(merged['skipped'])} skipped")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"shard": shard_slice, "merge": merge_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m vidprism_ds.data.prep.slices {shard,merge} ... (--help after the command)",
              file=sys.stderr)
        return EXIT_USAGE
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
