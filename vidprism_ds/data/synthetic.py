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

import random
import sys
from dataclasses import dataclass

import numpy as np

from vidprism_ds.data.generated_videos import GeneratedDataset
from vidprism_ds.data.presets import SYNTHETIC_CLASSES


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


DATASET = GeneratedDataset(
    prog="python -m vidprism_ds.data.synthetic", description=__doc__.split("\n\n")[0],
    class_names=SYNTHETIC_CLASSES, render_video=render_video,
    video_path="videos/{split}/{class_folder}/{split}_{k:05d}{extension}",
    train_per_class=32, val_per_class=8, size=64, frames=32, min_frames=4, even_frames=False, codec_option=True)
make_dataset = DATASET.make_dataset
main = DATASET.main


if __name__ == "__main__":
    sys.exit(main())
