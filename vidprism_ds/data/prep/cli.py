"""Command line of ``data_prep/shard.py``; see docs/data.md for the full story.

Exit status: 0 when every video that could be decoded was written (skipped videos are listed in the
manifest and the summary); 2 with a one-line ``shard.py: error: ...`` for bad arguments, an unreadable
list, an --out that cannot be created or written, an output directory made with other settings, or a
run in which not a single video could be written (almost always a wrong --root).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.data.prep.run import SettingsMismatch, ShardJob, run_sharding
from vidprism_ds.data.presets import CUSTOM, DATASET_NAMES, load_class_names
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.video_lists import (LIST_FORMATS, VideoEntry, VideoListError, detect_list_format,
                                          read_video_list, repeated_paths)

PROG = "shard.py"
REPEATS_SHOWN = 3  # repeated paths named in the warning; the count covers all of them


class UsageError(ValueError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Decode videos once into WebDataset tar shards of JPEG frames plus manifest.json.")
    parser.add_argument("--root", required=True, help="folder the list's paths are relative to")
    parser.add_argument("--list", required=True, dest="list_file",
                        help="video list: 'path label' / 'path num_frames label' text, Kinetics CSV or SSv2 JSON")
    parser.add_argument("--out", required=True, help="output folder for *.tar, manifest.json and reports/")
    parser.add_argument("--dataset", default=CUSTOM, choices=DATASET_NAMES,
                        help="preset: gives the class list when --labels is not given (default: custom)")
    parser.add_argument("--labels", default="", help="class list file, one name per line (line N = id N)")
    parser.add_argument("--list-format", default="auto", choices=LIST_FORMATS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoder processes")
    parser.add_argument("--max-frames", type=int, default=FrameSettings.max_frames,
                        help="keep at most this many frames per video, evenly spread (default %(default)s)")
    parser.add_argument("--fps", type=float, default=FrameSettings.target_fps,
                        help="resample to this frame rate before --max-frames (0 = every frame)")
    parser.add_argument("--burst-count", type=int, default=FrameSettings.burst_count,
                        help="dense bursts per video, at evenly spaced anchors, for data.clip_sampling dense/multirate "
                             "(0 = the sparse base only; default %(default)s)")
    parser.add_argument("--burst-length", type=int, default=FrameSettings.burst_length,
                        help="frames per burst (default %(default)s)")
    parser.add_argument("--burst-fps", type=float, default=FrameSettings.burst_fps,
                        help="frame rate inside a burst (0 = the source rate: consecutive frames)")
    parser.add_argument("--short-side", type=int, default=FrameSettings.short_side,
                        help="resize frames so the short side is this many pixels, never enlarging")
    parser.add_argument("--jpeg-quality", type=int, default=FrameSettings.jpeg_quality)
    parser.add_argument("--shard-size", type=int, default=128, help="list rows (videos) per shard")
    parser.add_argument("--prefix", default="shard", help="shard file name prefix")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one video may take to decode")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--decoder-logs", action="store_true",
                        help="let the decoder print its own error messages (hidden by default: reasons go to the manifest)")
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    checks = [
        (Path(args.root).is_dir(), f"--root {args.root}: not a directory"),
        (not Path(args.out).exists() or Path(args.out).is_dir(), f"--out {args.out}: exists and is not a directory"),
        (not args.labels or Path(args.labels).is_file(), f"--labels {args.labels}: no such file"),
        (args.workers >= 1, "--workers must be >= 1"),
        (args.max_frames >= 1, "--max-frames must be >= 1"),
        (args.fps >= 0, "--fps must be >= 0"),
        (args.burst_count >= 0, "--burst-count must be >= 0"),
        (args.burst_length >= 1, "--burst-length must be >= 1"),
        (args.burst_fps >= 0, "--burst-fps must be >= 0"),
        (args.short_side >= 16, "--short-side must be >= 16"),
        (1 <= args.jpeg_quality <= 95, "--jpeg-quality must be in [1, 95]"),
        (args.shard_size >= 1, "--shard-size must be >= 1"),
        (args.timeout > 0, "--timeout must be > 0"),
        (args.prefix and "/" not in args.prefix and not args.prefix.startswith("."), "--prefix must be a plain name"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def _check_out_writable(out: Path) -> None:
    """Refuse an --out that cannot be created or written now, in one line, before the list is read
    or a worker started (otherwise the first mkdir or shard write dies with a traceback). Writing a
    throw-away file is the only reliable test: permission bits say nothing for root, ACLs or read-only
    mounts. Nothing is left behind: the probe goes in --out, or in its nearest existing parent, and
    vanishes when closed."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: cannot create it, {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass  # creating the file was the test
    except OSError as err:
        where = "cannot write in it" if existing == out else f"cannot create it in {existing}"
        raise UsageError(f"--out {out}: {where} ({err.strerror or err})") from None


def warn_repeated_paths(entries: list[VideoEntry]) -> None:
    """One stderr line when the list names a video more than once. Every row is still written as its
    own sample (its list position is its key and decides its shard, and a repeat may be deliberate
    oversampling); the warning is there because a repeat in an evaluation list counts that video twice."""
    repeats = repeated_paths(entries)
    if not repeats:
        return
    extra_rows = sum(len(lines) - 1 for lines in repeats.values())
    shown = "; ".join(f"{path} (lines {', '.join(map(str, lines))})"
                      for path, lines in list(repeats.items())[:REPEATS_SHOWN])
    more = f"; and {len(repeats) - REPEATS_SHOWN} more paths" if len(repeats) > REPEATS_SHOWN else ""
    rows = "1 list row repeats" if extra_rows == 1 else f"{extra_rows} list rows repeat"
    print(f"{PROG}: warning: {rows} a path listed earlier, written again as a sample of its own: "
          f"{shown}{more}", file=sys.stderr)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_job(args: argparse.Namespace) -> ShardJob:
    _check_arguments(args)
    _check_out_writable(Path(args.out))
    class_names = None
    if args.labels or args.dataset != CUSTOM:
        try:
            class_names = load_class_names(args.dataset, args.labels)
        except (OSError, ValueError) as err:
            raise UsageError(f"class list: {err}") from None
    list_path = Path(args.list_file)
    entries, classes = read_video_list(list_path, args.root, args.list_format, class_names)
    if not entries:
        raise UsageError(f"--list {list_path}: no videos listed")
    warn_repeated_paths(entries)
    num_classes = len(classes) if classes else 1 + max(e.label for e in entries)
    list_format = args.list_format if args.list_format != "auto" else detect_list_format(list_path)
    source = {"list": str(list_path.resolve()), "list_format": list_format, "sha256": _sha256(list_path),
              "root": str(Path(args.root).resolve())}
    frames = FrameSettings(max_frames=args.max_frames, target_fps=args.fps, short_side=args.short_side,
                           jpeg_quality=args.jpeg_quality, burst_count=args.burst_count,
                           burst_length=args.burst_length, burst_fps=args.burst_fps)
    return ShardJob(entries=entries, out_dir=Path(args.out), frames=frames, classes=classes,
                    num_classes=num_classes, source=source, dataset=args.dataset, shard_size=args.shard_size,
                    prefix=args.prefix, workers=args.workers, timeout_s=args.timeout,
                    decoder_logs=args.decoder_logs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        job = build_job(args)
        summary = run_sharding(job, progress=not args.no_progress)
    except (UsageError, VideoListError, SettingsMismatch) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished shards are kept, re-run the same command to resume", file=sys.stderr)
        return 130
    print(summary.text())
    if summary.samples == 0:
        print(f"{PROG}: error: no video could be written (is --root {args.root} right?)", file=sys.stderr)
        return 2
    return 0
