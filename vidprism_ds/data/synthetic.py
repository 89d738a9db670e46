"""Synthetic videos whose classes differ only in time.

Every video is rendered from a random *content*: a smooth textured background, a coloured disc of
random size on a random row, and N positions spread along a horizontal path (ascending x). The N base
frames (disc at position i) are the same for every class; the class only decides their **order**:

====================  ======================================  ===================================
class                 frame order                              what it looks like
====================  ======================================  ===================================
``moving right``      0, 1, ..., N-1                           left to right
``moving left``       N-1, ..., 1, 0                           right to left
``right and back``    0, 2, 4, ..., N-1, ..., 3, 1             out to the right at double rate, back
``left and back``     mirror of the above (N-1, N-3, ...)      out to the left at double rate, back
====================  ======================================  ===================================

So a video of any class is a permutation of the same frames, and the content is drawn independently of
the class: any statistic of the *bag* of frames (mean, histogram, sorted list) has the same
distribution in every class, while direction, order and rate tell them apart. A frame-bag model is at
chance; a temporal model can learn it. Horizontal flips change the class (direction sensitive).

Everything is deterministic from ``seed``: video k of a split is rendered from ``Random((seed, split, k))``
and encoded with a single-threaded encoder.

Command line::

    python -m vidprism_ds.data.synthetic --out DIR [--train-per-class 32] [--val-per-class 8]
        [--size 64] [--frames 32] [--fps 8] [--seed 0] [--codec libx264]

writes ``DIR/videos/<split>/<class>/<split>_<k>.mp4``, ``DIR/train.txt`` and ``DIR/val.txt`` in the
official ``relative/path label`` format (relative to DIR) and ``DIR/labels.txt``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vidprism_ds.data.presets import SYNTHETIC_CLASSES

CONTAINER_OF_CODEC = {"libx264": ".mp4", "h264": ".mp4", "mpeg4": ".avi", "libvpx-vp9": ".webm", "libvpx": ".webm"}


def class_frame_order(class_id: int, num_frames: int) -> list[int]:
    """The order in which the base frames 0..N-1 are shown for ``class_id``: always a permutation."""
    forward = list(range(num_frames))
    out_and_back = forward[0::2] + forward[1::2][::-1]
    orders = (
        forward,
        forward[::-1],
        out_and_back,
        [num_frames - 1 - i for i in out_and_back],
    )
    return orders[class_id]


@dataclass(frozen=True)
class Content:
    background_hw3: np.ndarray  # float32 in [0, 1]
    colour: tuple[float, float, float]
    radius: float
    row: float
    xs: tuple[float, ...]  # ascending disc positions, one per base frame


def draw_content(rng: random.Random, size: int, num_frames: int) -> Content:
    # smooth texture: a coarse random grid, upsampled; muted so the disc stands out
    coarse = np.array([[[rng.random() for _ in range(3)] for _ in range(4)] for _ in range(4)], dtype=np.float32)
    rows = np.linspace(0, 3, size)
    fine_rows = np.stack([np.interp(rows, np.arange(4), coarse[:, j, c]) for j in range(4) for c in range(3)], -1)
    fine_rows = fine_rows.reshape(size, 4, 3)
    background = np.stack([np.interp(rows, np.arange(4), fine_rows[i, :, c]) for i in range(size) for c in range(3)], -1)
    background = (0.25 + 0.5 * background.reshape(size, size, 3)).astype(np.float32)
    radius = rng.uniform(size / 10, size / 6)
    span = rng.uniform(0.55, 0.8) * (size - 2 * radius)
    start = rng.uniform(radius, size - radius - span)
    xs = tuple(start + span * i / max(1, num_frames - 1) for i in range(num_frames))
    hue = rng.randrange(3)
    colour = [rng.uniform(0.0, 0.2) for _ in range(3)]
    colour[hue] = rng.uniform(0.85, 1.0)
    return Content(background_hw3=background, colour=tuple(colour), radius=radius,
                   row=rng.uniform(radius, size - radius), xs=xs)


def render_base_frames(content: Content) -> np.ndarray:
    """(N, H, W, 3) uint8, disc at ``content.xs[i]`` in frame i."""
    size = content.background_hw3.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    frames = []
    for x in content.xs:
        # soft edge (1 px) so sub-pixel positions are visible and the codec has no aliasing to fight
        inside = np.clip(content.radius + 0.5 - np.hypot(xx - x, yy - content.row), 0.0, 1.0)[..., None]
        frame = content.background_hw3 * (1 - inside) + np.array(content.colour, dtype=np.float32) * inside
        frames.append((frame * 255 + 0.5).astype(np.uint8))
    return np.stack(frames)


def render_video(seed_key: tuple, class_id: int, size: int, num_frames: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of one video of ``class_id``; content depends on ``seed_key`` only."""
    content = draw_content(random.Random(repr(seed_key)), size, num_frames)
    return render_base_frames(content)[class_frame_order(class_id, num_frames)]


def write_video(path: str | Path, frames_nhwc: np.ndarray, fps: int = 8, codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict | None = None) -> None:
    """Encode uint8 RGB frames into a real video file with PyAV (single-threaded: deterministic)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames_nhwc.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.thread_count = 1
        default_options = {"crf": "18", "preset": "veryfast"} if codec in ("libx264", "h264") else {}
        stream.options = {**default_options, **(options or {})}
        for frame_hw3 in frames_nhwc:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_hw3), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def folder_name(class_name: str) -> str:
    return class_name.replace(" ", "_")


def make_split(out_dir: Path, split: str, per_class: int, size: int, num_frames: int, fps: int, seed: int,
               codec: str = "libx264") -> list[tuple[str, int]]:
    """Render and encode one split; returns (path relative to out_dir, label) in list order."""
    extension = CONTAINER_OF_CODEC.get(codec, ".mp4")
    rows = []
    for k in range(per_class * len(SYNTHETIC_CLASSES)):
        class_id = k % len(SYNTHETIC_CLASSES)
        rel = f"videos/{split}/{folder_name(SYNTHETIC_CLASSES[class_id])}/{split}_{k:05d}{extension}"
        write_video(out_dir / rel, render_video((seed, split, k), class_id, size, num_frames), fps=fps, codec=codec)
        rows.append((rel, class_id))
    return rows


def write_list(path: Path, rows: Sequence[tuple[str, int]]) -> None:
    path.write_text("".join(f"{rel} {label}\n" for rel, label in rows), encoding="utf-8")


def make_dataset(out_dir: str | Path, train_per_class: int = 32, val_per_class: int = 8, size: int = 64,
                 num_frames: int = 32, fps: int = 8, seed: int = 0, codec: str = "libx264") -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"labels": out_dir / "labels.txt"}
    paths["labels"].write_text("".join(f"{name}\n" for name in SYNTHETIC_CLASSES), encoding="utf-8")
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        paths[split] = out_dir / f"{split}.txt"
        write_list(paths[split], make_split(out_dir, split, per_class, size, num_frames, fps, seed, codec))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidprism_ds.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--train-per-class", type=int, default=32)
    parser.add_argument("--val-per-class", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="frame width = height (even)")
    parser.add_argument("--frames", type=int, default=32, help="frames per video (>= 4)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--codec", default="libx264", choices=sorted(CONTAINER_OF_CODEC))
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 2:
        parser.error("--size must be an even number >= 16")
    if args.frames < 4:
        parser.error("--frames must be >= 4")
    if args.train_per_class < 0 or args.val_per_class < 0 or args.fps < 1:
        parser.error("--train-per-class/--val-per-class must be >= 0 and --fps >= 1")
    paths = make_dataset(args.out, args.train_per_class, args.val_per_class, args.size, args.frames, args.fps,
                         args.seed, args.codec)
    print(f"wrote {args.train_per_class * len(SYNTHETIC_CLASSES)} train and "
          f"{args.val_per_class * len(SYNTHETIC_CLASSES)} val videos; lists: {paths['train']}, {paths['val']}; "
          f"labels: {paths['labels']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
