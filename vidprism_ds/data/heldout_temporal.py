"""A held-out temporal benchmark: other visuals and other temporal rules than ``synthetic.py``.

The project's synthetic videos show one disc sliding horizontally over a smooth texture. Here two
shapes, a warm-coloured square and a cool-coloured triangle, take turns rising or falling *vertically*
over a striped background, and the class combines three temporal factors:

* **order of appearance**: which shape comes first (each is on screen for half the video);
* **direction**: both shapes rise (bottom to top) or both fall;
* **speed**: steady (one pass, one path step per frame) or fast (two passes, two steps per frame:
  positions 0, 2, 4, ... then 1, 3, 5, ...).

That makes 2 x 2 x 2 = 8 classes, e.g. ``square first, rising, steady``. As in ``synthetic.py`` each
video is rendered from a class-independent random *content* (background stripes, shape colours and
sizes, columns, vertical span): N base frames, the square at path position i in frame i < N/2 and
the triangle at position i - N/2 in the others. The class only decides the order in which the base
frames are shown. Every video of a content is therefore a permutation of the same frames, so any
statistic of the bag of frames has the same distribution in every class: appearance alone is at
chance (1/8), and only order and rate tell classes apart.

Command line (same layout as ``python -m vidprism_ds.data.synthetic``)::

    python -m vidprism_ds.data.heldout_temporal --out DIR [--train-per-class 16] [--val-per-class 8]
        [--size 32] [--frames 16] [--seed 0]

writes ``DIR/videos/<split>/<k>.mp4``, ``DIR/train.txt``, ``DIR/val.txt`` (``relative/path label``)
and ``DIR/labels.txt``; train with ``data.dataset=custom data.hflip=false data.labels=DIR/labels.txt``
(direction matters: its classes include left/right).
"""

from __future__ import annotations

import itertools
import math
import random
import sys
from dataclasses import dataclass

import numpy as np

from vidprism_ds.data.generated_videos import GeneratedDataset

SHAPES = ("square", "triangle")
DIRECTIONS = ("rising", "falling")
SPEEDS = ("steady", "fast")
# class id = first_shape * 4 + direction * 2 + speed
HELDOUT_CLASSES: tuple[str, ...] = tuple(
    f"{shape} first, {direction}, {speed}"
    for shape, direction, speed in itertools.product(SHAPES, DIRECTIONS, SPEEDS))


def class_factors(class_id: int) -> tuple[int, int, int]:
    """(first shape, direction, speed) indices of ``class_id``."""
    return class_id // 4, (class_id // 2) % 2, class_id % 2


def _half_order(length: int, direction: int, speed: int) -> list[int]:
    """Order of one shape's path positions 0..length-1 (0 = bottom)."""
    steady = list(range(length))
    order = steady if speed == 0 else steady[0::2] + steady[1::2]
    return order if direction == 0 else order[::-1]


def class_frame_order(class_id: int, num_frames: int) -> list[int]:
    """The order in which base frames 0..N-1 are shown for ``class_id``: always a permutation.

    Base frames 0..N/2-1 show the square, N/2..N-1 the triangle, each at path positions 0, 1, ..."""
    if num_frames % 2 or num_frames < 8:
        raise ValueError(f"the held-out videos need an even number of frames >= 8, got {num_frames}")
    first, direction, speed = class_factors(class_id)
    half = num_frames // 2
    within = _half_order(half, direction, speed)
    offsets = (0, half) if first == 0 else (half, 0)
    return [offsets[0] + i for i in within] + [offsets[1] + i for i in within]


@dataclass(frozen=True)
class HeldoutContent:
    background_hw3: np.ndarray  # float32 in [0, 1]
    colours: tuple[tuple[float, float, float], tuple[float, float, float]]  # square, triangle
    half_sizes: tuple[float, float]
    columns: tuple[float, float]  # x of each shape's path
    ys: tuple[float, ...]  # path positions from bottom (large y) to top, one per base frame of a shape


def _stripes(rng: random.Random, size: int) -> np.ndarray:
    """Oriented sinusoidal stripes between two muted colours: unlike synthetic.py's smooth blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(0.15, 0.4)
    phase = rng.uniform(0, 2 * math.pi)
    wave = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period + phase)
    low = np.array([rng.uniform(0.2, 0.45) for _ in range(3)], dtype=np.float32)
    high = np.array([rng.uniform(0.4, 0.65) for _ in range(3)], dtype=np.float32)
    return (low + (high - low) * wave[..., None]).astype(np.float32)


def _shape_colour(rng: random.Random, shape: int) -> tuple[float, float, float]:
    """Warm (red to yellow) squares, cool (blue to cyan) triangles: a shape is recognisable by colour as
    well as form, so telling which came first does not hinge on resolving a few pixels of outline."""
    low, mixed, high = rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.9), rng.uniform(0.85, 1.0)
    return (high, mixed, low) if shape == 0 else (low, mixed, high)


def draw_content(rng: random.Random, size: int, num_frames: int) -> HeldoutContent:
    half = num_frames // 2
    half_sizes = (rng.uniform(size / 12, size / 7), rng.uniform(size / 10, size / 6))
    margin = max(half_sizes) + 1
    span = rng.uniform(0.55, 0.8) * (size - 2 * margin)
    bottom = rng.uniform(margin + span, size - margin)
    ys = tuple(bottom - span * i / max(1, half - 1) for i in range(half))
    columns = tuple(rng.uniform(margin, size - margin) for _ in SHAPES)
    return HeldoutContent(background_hw3=_stripes(rng, size), colours=(_shape_colour(rng, 0), _shape_colour(rng, 1)),
                          half_sizes=half_sizes, columns=columns, ys=ys)


def _coverage(shape: int, cx: float, cy: float, half_size: float, size: int) -> np.ndarray:
    """(H, W, 1) soft (1 px edge) coverage of a square or an upward triangle centred at (cx, cy)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == 0:
        distance_inside = half_size - np.maximum(np.abs(dx), np.abs(dy))
    else:
        # apex up (image y grows downwards): inside below the two slanted edges and above the base
        slope_edge = (half_size + dy) / 2.0 - np.abs(dx)
        distance_inside = np.minimum(slope_edge, half_size - dy)
    return np.clip(distance_inside + 0.5, 0.0, 1.0)[..., None]


def render_base_frames(content: HeldoutContent) -> np.ndarray:
    """(N, H, W, 3) uint8: the square at path position i in frame i, then the triangle likewise."""
    size = content.background_hw3.shape[0]
    frames = []
    for shape in range(len(SHAPES)):
        colour = np.array(content.colours[shape], dtype=np.float32)
        for y in content.ys:
            inside = _coverage(shape, content.columns[shape], y, content.half_sizes[shape], size)
            frame = content.background_hw3 * (1 - inside) + colour * inside
            frames.append((frame * 255 + 0.5).astype(np.uint8))
    return np.stack(frames)


def render_video(seed_key: tuple, class_id: int, size: int, num_frames: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of one video; the content depends on ``seed_key`` only."""
    order = class_frame_order(class_id, num_frames)
    content = draw_content(random.Random(repr(("heldout",) + tuple(seed_key))), size, num_frames)
    return render_base_frames(content)[order]


DATASET = GeneratedDataset(
    prog="python -m vidprism_ds.data.heldout_temporal", description=__doc__.split("\n\n")[0],
    class_names=HELDOUT_CLASSES, render_video=render_video, video_path="videos/{split}/{split}_{k:05d}{extension}",
    train_per_class=16, val_per_class=8, size=32, frames=16, min_frames=8, even_frames=True, codec_option=False)
make_dataset = DATASET.make_dataset
main = DATASET.main


if __name__ == "__main__":
    sys.exit(main())
