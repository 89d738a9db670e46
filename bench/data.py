"""Data benchmark: shard loader vs on-the-fly decord decoding, sharding speed, and multi-rate shards.

    python bench/data.py [--videos 24] [--repeat 8] [--width 340 --height 256 --seconds 10 --fps 30]
                         [--workers 2] [--batch 8] [--frames 8 32] [--measure-batches 12] [--work DIR]
                         [--multirate [--mode-frames 8 16]] [--order [--rounds 2] [--block-shards 8]]

1. Writes ``--videos`` realistic h264 videos: Kinetics-like 10 s clips at 340x256 (the size Kinetics is
   usually pre-resized to), 30 fps, x264 defaults (keyframe every 250 frames, B-frames).
2. Lists every video ``--repeat`` times (so an epoch is long enough to time) and shards the list with
   ``data_prep/shard.py``'s engine and ``--workers`` decoder processes: videos/s.
3. For each clip length T in ``--frames``: training clips/s of ``build_train_loader`` (shards) and of
   ``build_raw_train_loader`` (decord on the fly, same list, same transforms, same DataLoader workers),
   timed over ``--measure-batches`` batches after two warm-up batches.

Prints a markdown table (paste it into docs/benchmarks.md, "## Data") and the figures as JSON.

``--order`` compares the global training order (``vidprism_ds.data.global_order``: samples read where they
lie through the shard index) with the per-rank order it replaced (each rank streams its own shard
permutation through a shuffle buffer), on the same shards (docs/benchmarks.md, "## Global training
order"): for each T in ``--frames``, clips/s with ``--workers`` DataLoader workers (the two orders timed
in turn, ``--rounds`` times each) and, with the loader in this process, bytes and read calls per clip
from the file system (``/proc/self/io``: ``rchar``, ``syscr``) and CPU ms per clip.

``--multirate`` runs the multi-rate comparison instead (docs/benchmarks.md, "## Multi-rate shards"):

1. Bytes per video of single-base shards (``--burst-count 0``: today's frames) and multi-rate shards at
   the default burst settings, on the ``--videos`` long videos and on 16-frame synthetic videos
   (``vidprism_ds.data.synthetic``'s kind: there the base already keeps every frame).
2. For each T in ``--mode-frames``: training clips/s of ``segment`` on the single-base shards and of
   ``segment``, ``dense`` and ``multirate`` on the multi-rate shards of the same list.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from vidprism_ds.config.schema import DataConfig
from vidprism_ds.data import build_raw_train_loader, build_train_loader
from vidprism_ds.data.clip_settings import TrainClipSettings
from vidprism_ds.data.clips import to_train_clips
from vidprism_ds.data.collate import collate_train
from vidprism_ds.data.damage import DamageLog, skip_damaged
from vidprism_ds.data.epoch_loader import EpochLoader, train_batches_per_rank
from vidprism_ds.data.manifest import load_manifest
from vidprism_ds.data.prep.run import ShardJob, run_sharding
from vidprism_ds.data.presets import SYNTHETIC_CLASSES
from vidprism_ds.data.sample_filters import keep_safe_members, shuffle_buffer, take_worker_share
from vidprism_ds.data.shard_source import endless_permutations, read_shards
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.generated_videos import write_video
from vidprism_ds.data.synthetic import render_video
from vidprism_ds.data.video_lists import read_video_list


def realistic_frames(seed: int, width: int, height: int, num_frames: int) -> np.ndarray:
    """(N, H, W, 3) uint8: a panning scene (smooth colour regions plus fine texture), two moving
    discs and a little sensor noise. Tuned to natural-video statistics at this size: ~25 KB per
    JPEG frame at quality 90 and a few hundred kbit/s of h264, so neither side of the comparison is
    made artificially cheap or expensive."""
    rng = np.random.default_rng(seed)
    pan = 2  # pixels per frame
    coarse = rng.integers(0, 255, (height // 16 + 2, (width + num_frames * pan) // 16 + 2, 3), dtype=np.uint8)
    scene = np.asarray(Image.fromarray(coarse).resize((coarse.shape[1] * 16, coarse.shape[0] * 16), Image.BICUBIC))
    scene = scene.astype(np.float32) + rng.normal(0, 8, scene.shape[:2])[..., None]
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = scene[:height, pan * t:pan * t + width].copy()
        for k, colour in enumerate(((255, 40, 40), (40, 40, 255))):
            cx = (0.2 + 0.6 * ((t / num_frames + 0.5 * k) % 1.0)) * width
            cy = (0.3 + 0.4 * k) * height
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < (0.08 * height) ** 2] = colour
        frame += rng.normal(0, 2, frame.shape)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def make_videos(root: Path, count: int, width: int, height: int, seconds: float, fps: int) -> list[tuple[str, int]]:
    rows = []
    for k in range(count):
        rel = f"videos/bench_{k:03d}.mp4"
        if not (root / rel).exists():
            write_video(root / rel, realistic_frames(k, width, height, int(seconds * fps)), fps=fps)
        rows.append((rel, k % len(SYNTHETIC_CLASSES)))
    return rows


def time_loader(loader, measure_batches: int, warmup_batches: int = 2) -> float:
    """Clips/s over ``measure_batches`` batches after ``warmup_batches`` (worker start-up excluded)."""
    clips, started, epoch = 0, None, 0
    seen = 0
    while seen < warmup_batches + measure_batches:
        loader.set_epoch(epoch)
        for batch in loader:
            seen += 1
            if seen == warmup_batches:
                started = time.perf_counter()
            elif seen > warmup_batches:
                clips += batch["frames"].shape[0]
            if seen >= warmup_batches + measure_batches:
                break
        epoch += 1
    return clips / (time.perf_counter() - started)


def shard_list(work: Path, list_file: Path, frames: FrameSettings, workers: int, name: str) -> tuple[Path, float]:
    """Shard ``list_file`` (paths relative to ``work``) into ``work/name``; (folder, bytes per video)."""
    entries, classes = read_video_list(list_file, work, "auto", list(SYNTHETIC_CLASSES))
    shard_dir = work / f"{name}-{time.time_ns()}"
    job = ShardJob(entries=entries, out_dir=shard_dir, frames=frames, classes=classes, num_classes=len(classes),
                   source={"list": str(list_file), "sha256": "bench"}, dataset="synthetic", shard_size=32,
                   workers=workers)
    summary = run_sharding(job, progress=False)
    print(summary.text(), file=sys.stderr)
    return shard_dir, summary.bytes / max(1, summary.samples)


def storage_figures(work: Path, list_file: Path, workers: int) -> dict:
    """Bytes per video, single-base vs multi-rate shards (default bursts), and the folders made."""
    single_dir, single_bytes = shard_list(work, list_file, FrameSettings(burst_count=0), workers, "single")
    multi_dir, multi_bytes = shard_list(work, list_file, FrameSettings(), workers, "multirate")
    return {"single_base_bytes": round(single_bytes), "multirate_bytes": round(multi_bytes),
            "ratio": round(multi_bytes / single_bytes, 3), "dirs": (single_dir, multi_dir)}


def synthetic_list(work: Path, count: int, size: int = 64, frames: int = 16) -> Path:
    """``count`` videos as ``python -m vidprism_ds.data.synthetic`` writes them (16 frames, 64 px)."""
    rows = []
    for k in range(count):
        rel = f"synthetic/video_{k:03d}.mp4"
        if not (work / rel).exists():
            write_video(work / rel, render_video((0, k), k % len(SYNTHETIC_CLASSES), size, frames))
        rows.append(f"{rel} {k % len(SYNTHETIC_CLASSES)}\n")
    list_file = work / "synthetic.txt"
    list_file.write_text("".join(rows))
    return list_file


def cpu_ms_per_clip(loader, measure_batches: int) -> float:
    """CPU time per clip of a loader built with no workers (the process does all the work), after one
    warm-up batch: unlike clips/s it hardly moves when other processes share the cores."""
    batches = iter(loader)
    next(batches)
    clips, started = 0, time.process_time()
    for _, batch in zip(range(measure_batches), batches):
        clips += batch["frames"].shape[0]
    return 1000 * (time.process_time() - started) / max(1, clips)


def multirate_comparison(args, work: Path, list_file: Path) -> dict:
    long_videos = storage_figures(work, list_file, args.workers)
    single_dir, multi_dir = long_videos.pop("dirs")
    synthetic = storage_figures(work, synthetic_list(work, args.videos), args.workers)
    synthetic.pop("dirs")
    loaders = []
    for num_frames in args.mode_frames:
        for mode, shard_dir in (("segment", single_dir), ("segment", multi_dir), ("dense", multi_dir),
                                ("multirate", multi_dir)):
            cfg = DataConfig(dataset="synthetic", num_frames=num_frames, image_size=args.image_size,
                             num_workers=args.workers, shuffle_buffer=64, clip_sampling=mode)
            rate = time_loader(build_train_loader(cfg, shard_dir, args.batch), args.measure_batches)
            in_process = build_train_loader(dataclasses.replace(cfg, num_workers=0), shard_dir, args.batch)
            cpu_ms = cpu_ms_per_clip(in_process, args.measure_batches)
            shards = "single-base" if shard_dir == single_dir else "multi-rate"
            loaders.append({"T": num_frames, "mode": mode, "shards": shards, "clips_per_s": round(rate, 1),
                            "cpu_ms_per_clip": round(cpu_ms, 1)})
            print(loaders[-1], file=sys.stderr)
    return {"long_videos": long_videos, "synthetic_16_frames": synthetic, "loaders": loaders}


def print_multirate(results: dict, args) -> None:
    print(f"Machine: {results['machine']}. Videos: {results['videos']}. "
          f"Workers: {args.workers}, batch {args.batch}, image size {args.image_size}.\n")
    print("| videos | single-base shards (bytes/video) | multi-rate shards (bytes/video) | ratio |")
    print("| --- | --- | --- | --- |")
    for name, key in (("long videos", "long_videos"), ("synthetic, 16 frames", "synthetic_16_frames")):
        row = results[key]
        print(f"| {name} | {row['single_base_bytes']} | {row['multirate_bytes']} | {row['ratio']}x |")
    print("\n| clip length T | data.clip_sampling | shards | training clips/s | CPU ms per clip (no workers) |")
    print("| --- | --- | --- | --- | --- |")
    for row in results["loaders"]:
        print(f"| {row['T']} | {row['mode']} | {row['shards']} | {row['clips_per_s']} | {row['cpu_ms_per_clip']} |")
    print("\n" + json.dumps(results))


def per_rank_order_loader(cfg: DataConfig, shard_dir: Path, micro_batch: int, seed: int = 0) -> EpochLoader:
    """The training order the global order replaced, rebuilt from the stages that remain (one rank): an
    endless permutation of shards per (rank, worker) slot, streamed (``tar_reader``), through a shuffle
    buffer of ``data.shuffle_buffer`` samples, damaged samples dropped, this worker's share of the batches."""
    manifest = load_manifest(shard_dir)
    shards = [(s.path, s.samples) for s in manifest.shards if s.samples > 0]
    batches = train_batches_per_rank(manifest.num_samples, micro_batch, 1)

    def number_samples(samples):  # the clip stage keys its draws by __position__
        for position, sample in enumerate(samples):
            yield {**sample, "__position__": position}

    def make(epoch: int):
        return wds.DataPipeline(
            functools.partial(endless_permutations, shards, seed, epoch, 0, 1),
            read_shards,
            functools.partial(shuffle_buffer, bufsize=cfg.shuffle_buffer, seed=seed, epoch=epoch, rank=0, world_size=1),
            functools.partial(keep_safe_members, num_classes=manifest.num_classes),
            number_samples,
            functools.partial(to_train_clips, settings=TrainClipSettings.from_config(cfg), seed=seed, epoch=epoch),
            functools.partial(skip_damaged, damage=DamageLog(cfg.max_bad_samples, "training")),
            functools.partial(take_worker_share, batches_per_rank=batches, batch_size=micro_batch),
            wds.batched(micro_batch, collation_fn=collate_train, partial=False))

    return EpochLoader(make, batches, cfg.num_workers, manifest.num_samples)


def io_per_clip(loader, measure_batches: int) -> dict:
    """File-system bytes and read calls (``/proc/self/io`` rchar, syscr) and CPU ms per clip of a loader
    with no workers, after one warm-up batch."""
    def counters() -> dict[str, int]:
        fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return {"rchar": int(fields["rchar"]), "syscr": int(fields["syscr"])}

    batches = iter(loader)
    next(batches)
    before, cpu = counters(), time.process_time()
    clips = 0
    for _, batch in zip(range(measure_batches), batches):
        clips += batch["frames"].shape[0]
    after, cpu = counters(), time.process_time() - cpu
    return {"bytes_per_clip": round((after["rchar"] - before["rchar"]) / clips),
            "reads_per_clip": round((after["syscr"] - before["syscr"]) / clips, 1),
            "cpu_ms_per_clip": round(1000 * cpu / clips, 1)}


def order_comparison(args, shard_dir: Path) -> dict:
    rows = []
    for num_frames in args.frames:
        cfg = DataConfig(dataset="synthetic", num_frames=num_frames, image_size=args.image_size,
                         num_workers=args.workers, shuffle_buffer=64, shuffle_block_shards=args.block_shards)
        builders = {"global": lambda c: build_train_loader(c, shard_dir, args.batch),
                    "per-rank (before)": lambda c: per_rank_order_loader(c, shard_dir, args.batch)}
        rates = {name: [] for name in builders}
        for _ in range(args.rounds):  # in turn, so that load from others on the machine hits both alike
            for name, build in builders.items():
                rates[name].append(time_loader(build(cfg), args.measure_batches))
        for name, build in builders.items():
            in_process = io_per_clip(build(dataclasses.replace(cfg, num_workers=0)), args.measure_batches)
            rows.append({"T": num_frames, "order": name, "clips_per_s": round(sum(rates[name]) / len(rates[name]), 1),
                         "clips_per_s_rounds": [round(r, 1) for r in rates[name]], **in_process})
            print(rows[-1], file=sys.stderr)
    return {"block_shards": args.block_shards, "shards": len(list(shard_dir.glob("*.tar"))), "loaders": rows}


def print_order(results: dict, args) -> None:
    print(f"Machine: {results['machine']}. Videos: {results['videos']}. Workers: {args.workers}, batch "
          f"{args.batch}, image size {args.image_size}; {results['shards']} shards, data.shuffle_block_shards="
          f"{results['block_shards']}, data.shuffle_buffer=64 (per-rank order).\n")
    print("| clip length T | order | training clips/s | file bytes read per clip | read calls per clip | "
          "CPU ms per clip (no workers) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in results["loaders"]:
        print(f"| {row['T']} | {row['order']} | {row['clips_per_s']} | {row['bytes_per_clip']} | "
              f"{row['reads_per_clip']} | {row['cpu_ms_per_clip']} |")
    print("\n" + json.dumps(results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=8, help="list rows per video")
    parser.add_argument("--width", type=int, default=340)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="decoder processes and DataLoader workers")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 32], help="clip lengths T to time")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--measure-batches", type=int, default=12)
    parser.add_argument("--work", default="", help="work folder (default: a temporary one, deleted)")
    parser.add_argument("--multirate", action="store_true",
                        help="bytes per video and clips/s per data.clip_sampling mode instead (see above)")
    parser.add_argument("--mode-frames", type=int, nargs="+", default=[8, 16],
                        help="clip lengths T for --multirate (dense needs T <= the default burst length, 16)")
    parser.add_argument("--order", action="store_true",
                        help="the global training order against the per-rank order it replaced (see above)")
    parser.add_argument("--rounds", type=int, default=2, help="--order: timings of each order, taken in turn")
    parser.add_argument("--block-shards", type=int, default=8, help="--order: data.shuffle_block_shards")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(args.work or temporary)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        rows = make_videos(work, args.videos, args.width, args.height, args.seconds, args.fps)
        print(f"videos ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        list_file = work / "bench.txt"
        list_file.write_text("".join(f"{rel} {label}\n" for rel, label in rows * args.repeat))
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
        videos = f"{args.videos} x {args.repeat} rows, {args.width}x{args.height}, {args.seconds:g} s at {args.fps} fps, h264"
        if args.multirate:
            print_multirate({"machine": machine, "videos": videos, **multirate_comparison(args, work, list_file)}, args)
            return 0
        if args.order:
            shard_dir, _ = shard_list(work, list_file, FrameSettings(), args.workers, "shards")
            print_order({"machine": machine, "videos": videos, **order_comparison(args, shard_dir)}, args)
            return 0

        entries, classes = read_video_list(list_file, work, "auto", list(SYNTHETIC_CLASSES))
        shard_dir = work / f"shards-{time.time_ns()}"
        job = ShardJob(entries=entries, out_dir=shard_dir, frames=FrameSettings(), classes=classes,
                       num_classes=len(classes), source={"list": str(list_file), "sha256": "bench"},
                       dataset="synthetic", shard_size=32, workers=args.workers)
        summary = run_sharding(job, progress=False)
        shard_rate = summary.rows / summary.seconds
        print(summary.text(), file=sys.stderr)

        results = {"machine": machine, "videos": videos,
                   "shard_videos_per_s": round(shard_rate, 2),
                   "shard_bytes_per_video": summary.bytes // max(1, summary.samples), "loaders": []}
        for num_frames in args.frames:
            cfg = DataConfig(dataset="synthetic", num_frames=num_frames, image_size=args.image_size,
                             num_workers=args.workers, shuffle_buffer=64)
            shard_loader = build_train_loader(cfg, shard_dir, args.batch)
            raw_loader = build_raw_train_loader(cfg, list_file, args.batch, video_root=work)
            shard_cps = time_loader(shard_loader, args.measure_batches)
            raw_cps = time_loader(raw_loader, args.measure_batches)
            results["loaders"].append({"T": num_frames, "shard_clips_per_s": round(shard_cps, 1),
                                       "raw_decord_clips_per_s": round(raw_cps, 1),
                                       "speedup": round(shard_cps / raw_cps, 1)})
            print(results["loaders"][-1], file=sys.stderr)

    print(f"Machine: {results['machine']}. Videos: {results['videos']}. "
          f"Workers: {args.workers}, batch {args.batch}, image size {args.image_size}.\n")
    print("| clip length T | shard loader (clips/s) | decord on the fly (clips/s) | speed-up |")
    print("| --- | --- | --- | --- |")
    for row in results["loaders"]:
        print(f"| {row['T']} | {row['shard_clips_per_s']} | {row['raw_decord_clips_per_s']} | {row['speedup']}x |")
    print(f"\nshard.py: {results['shard_videos_per_s']} videos/s with {args.workers} workers "
          f"({results['shard_bytes_per_video'] / 1e6:.2f} MB per video at the default 64 frames, short side 256, "
          f"JPEG quality 90)")
    print("\n" + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
