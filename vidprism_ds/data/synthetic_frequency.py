"""A frequency benchmark: classes that differ only in how fast an event repeats, and order classes.

``synthetic.py``'s classes differ in the order of their frames; a model that sees a handful of frames
spread over the video can tell them apart. This set adds classes that differ only in the **frequency**
of a periodic event, at rates a sparse sampling of the video cannot resolve. Every video is 96 frames
(4 s at 24 fps by default) drawn from the same random *content* distribution as ``synthetic.py`` (smooth
textured background, a coloured disc of random size, row and path):

====================  ==============================================================================
class                 what it shows
====================  ==============================================================================
``blinks 4 times``    the disc fades in and out 4 times over the video (1 Hz at 24 fps)
``blinks 12 times``   ... 12 times (3 Hz)
``blinks 20 times``   ... 20 times (5 Hz)
``blinks 28 times``   ... 28 times (7 Hz)
``moving right``      ``synthetic.py``'s four order/direction classes, rendered at the same length
... (4 classes)
====================  ==============================================================================

A blinking disc stands still at the middle of its path; its opacity is ``0.5 + 0.5 cos(2 pi c n / N +
phase)`` in frame n of N for c cycles, with a random phase. The content and the phase are drawn
independently of the class, so every blink class has the same distribution of single frames (the
opacity of a frame at a uniform random phase has the same distribution for every c) and the same mean
frame over the video (a whole number of cycles). What separates them is the rate.

The counts are chosen so that all four alias onto the same apparent rate in the shards' sparse base: a
base of 16 frames spread evenly over the video samples it at 4 per cycle of "4 times", and 12, 20 and 28
cycles sampled at 16 points read as 4 cycles (12 = 16 - 4, 20 = 16 + 4, 28 = 32 - 4); with a random
phase the four are then the same distribution of base sequences. Only frames closer together than the
base's spacing (consecutive source frames: a dense burst) tell them apart. 4 cycles is below the base's
Nyquist limit (8 cycles), the other three above it.

Command line (the layout of ``python -m vidprism_ds.data.synthetic``)::

    python -m vidprism_ds.data.synthetic_frequency --out DIR [--train-per-class 32] [--val-per-class 8]
        [--size 32] [--frames 96] [--fps 24] [--seed 0]

writes ``DIR/videos/<split>/<class>/<split>_<k>.mp4``, ``DIR/train.txt``, ``DIR/val.txt`` and
``DIR/labels.txt``; train with ``data.dataset=custom data.hflip=false data.labels=DIR/labels.txt``.
"""

from __future__ import annotations

import math
import random
import sys

import numpy as np

from vidprism_ds.data.generated_videos import GeneratedDataset
from vidprism_ds.data.presets import SYNTHETIC_CLASSES
from vidprism_ds.data.synthetic import Content, draw_content, render_base_frames
from vidprism_ds.data.synthetic import class_frame_order as order_frame_order

# cycles of the blink over the whole video, one class each; the order classes follow them
BLINK_CYCLES: tuple[int, ...] = (4, 12, 20, 28)
FREQUENCY_CLASSES: tuple[str, ...] = tuple(f"blinks {cycles} times" for cycles in BLINK_CYCLES)
FREQUENCY_BENCH_CLASSES: tuple[str, ...] = FREQUENCY_CLASSES + SYNTHETIC_CLASSES
# the source must resolve the fastest blink: more than 2 frames per cycle of 28, with a margin
MIN_FRAMES = 64
DEFAULT_FRAMES = 96
DEFAULT_FPS = 24


def is_frequency_class(class_id: int) -> bool:
    return class_id < len(BLINK_CYCLES)


def blink_opacity(cycles: int, phase: float, frame_indices, num_frames: int) -> np.ndarray:
    """Opacity of the disc in the given frames of a video of ``num_frames`` frames (float64, in [0, 1])."""
    n = np.asarray(frame_indices, dtype=np.float64)
    return 0.5 + 0.5 * np.cos(2 * math.pi * cycles * n / num_frames + phase)


def render_blink(content: Content, opacity_n: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8: the disc at the middle of its path, blended in with each frame's opacity."""
    size = content.background_hw3.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    x = content.xs[len(content.xs) // 2]
    # the same soft 1 px edge as synthetic.render_base_frames
    inside = np.clip(content.radius + 0.5 - np.hypot(xx - x, yy - content.row), 0.0, 1.0)[None, ..., None]
    weight = inside * np.asarray(opacity_n, dtype=np.float32)[:, None, None, None]
    colour = np.array(content.colour, dtype=np.float32)
    frames = content.background_hw3[None] * (1 - weight) + colour * weight
    return (frames * 255 + 0.5).astype(np.uint8)


def draw_video(seed_key: tuple, size: int, num_frames: int) -> tuple[Content, float]:
    """The class-independent part of a video: its content and its blink phase."""
    rng = random.Random(repr(("frequency",) + tuple(seed_key)))
    content = draw_content(rng, size, num_frames)
    return content, rng.uniform(0.0, 2 * math.pi)


def render_video(seed_key: tuple, class_id: int, size: int, num_frames: int) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of one video of ``class_id``; content and phase depend on ``seed_key`` only."""
    content, phase = draw_video(seed_key, size, num_frames)
    if is_frequency_class(class_id):
        return render_blink(content, blink_opacity(BLINK_CYCLES[class_id], phase, range(num_frames), num_frames))
    return render_base_frames(content)[order_frame_order(class_id - len(BLINK_CYCLES), num_frames)]


DATASET = GeneratedDataset(
    prog="python -m vidprism_ds.data.synthetic_frequency", description=__doc__.split("\n\n")[0],
    class_names=FREQUENCY_BENCH_CLASSES, render_video=render_video,
    video_path="videos/{split}/{class_folder}/{split}_{k:05d}{extension}",
    train_per_class=32, val_per_class=8, size=32, frames=DEFAULT_FRAMES, min_frames=MIN_FRAMES, even_frames=False,
    codec_option=False, fps=DEFAULT_FPS)
make_dataset = DATASET.make_dataset
main = DATASET.main


if __name__ == "__main__":
    sys.exit(main())
