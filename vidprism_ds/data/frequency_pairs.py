"""The broadened frequency benchmark: pairs of blink classes that differ only in the blink's period.

``synthetic_frequency.py`` renders one configuration (96-frame videos, one disc size and resolution,
sinusoidal fades, cycle counts chosen to alias in a 16-frame base). A head can pass it by learning that
configuration. This set varies, **independently of the class**, everything except the period:

* the video's length: 2 to 5 s (50 to 125 frames at 25 fps), so shards written with ``data_prep/shard.py``
  defaults (a 64-frame base, 2 bursts of 16 consecutive frames) hold every frame of the short videos in
  the base and a subsampled base of the long ones;
* the source resolution (a square frame of 32 to 64 px) and the square's size (15 to 40% of the frame);
* the duty cycle (the fraction of each period the square is shown: 0.3 to 0.7) and the phase (a uniform
  random fraction of a period);
* the background texture, the square's colour and position.

A blink class shows a still square switched on and off (a hard square wave, as a user's video of a
blinking light would) with a period of ``P`` source frames, ``P`` in ``BLINK_PERIODS`` = 4, 8, 16, 32 (6.25
down to 0.78 blinks a second). The report reads every **pair** of blink classes (``PAIRS``), which differ
only in ``P``; they cover the cases a multirate clip must handle:

==========  =============================================================================================
pair        what a 16-frame burst holds
==========  =============================================================================================
``4/16``    4 cycles vs 1 (the issue's pair: on/off every 2 frames vs runs of 8)
``4/8``     4 cycles vs 2 (both inside a burst)
``8/32``    2 cycles vs half a cycle (the long period is longer than a burst)
``16/32``   1 cycle vs half: a burst does not resolve it (``burst_resolves``); the whole-video base does
==========  =============================================================================================

The four order/direction classes of ``synthetic.py`` follow, rendered at each video's length and
resolution. Content, length, resolution, duty cycle and phase are drawn from the video's seed key only,
so video k of a split has the same draws whatever its class.

Command line (the layout of ``python -m vidprism_ds.data.synthetic``; ``--size`` and ``--frames`` are
ignored: every video draws its own)::

    python -m vidprism_ds.data.frequency_pairs --out DIR [--train-per-class 32] [--val-per-class 8] [--seed 0]
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass

import numpy as np

from vidprism_ds.data.generated_videos import GeneratedDataset
from vidprism_ds.data.presets import SYNTHETIC_CLASSES
from vidprism_ds.data.synthetic import class_frame_order, draw_content, render_base_frames

FPS = 25
MIN_FRAMES, MAX_FRAMES = 2 * FPS, 5 * FPS  # 2 to 5 s
# even (the h264 encoder's yuv420p needs it) and not a multiple of 24: decord 0.6 fails to decode 24, 48 and
# 72 px wide h264 frames of this encoder ("DECORDArrayCopyFromTo: The size must exactly match"), measured
RESOLUTIONS = (32, 40, 56, 64)
SQUARE_FRACTION = (0.15, 0.4)
DUTY_CYCLE = (0.3, 0.7)
# blink period in source frames, one class each (a factor of 2 apart, so every pair differs by at least
# that factor); the order classes follow
BLINK_PERIODS: tuple[int, ...] = (4, 8, 16, 32)
BLINK_CLASSES: tuple[str, ...] = tuple(f"blinks every {period} frames" for period in BLINK_PERIODS)
# every (short, long) pair of blink periods, the 4/16 first
PAIRS: tuple[tuple[int, int], ...] = ((4, 16), (4, 8), (4, 32), (8, 16), (8, 32), (16, 32))
PAIR_NAMES: tuple[str, ...] = tuple(f"{short}/{long}" for short, long in PAIRS)
FREQUENCY_PAIRS_CLASSES: tuple[str, ...] = BLINK_CLASSES + SYNTHETIC_CLASSES


def pair_class_ids(pair: int) -> list[int]:
    """Class ids (short period, long period) of pair ``pair``."""
    return [BLINK_PERIODS.index(period) for period in PAIRS[pair]]


ORDER_CLASS_IDS: list[int] = list(range(len(BLINK_CLASSES), len(FREQUENCY_PAIRS_CLASSES)))


def burst_resolves(pair: tuple[int, int], burst_length: int) -> bool:
    """Whether ``burst_length`` consecutive frames tell the pair apart at any phase: the short period fits
    twice in the burst (two on/off transitions of the same kind, whatever the phase) and is at least 2
    frames (Nyquist), and the long one is at least twice as long (at most half as many transitions)."""
    short, long = pair
    return 2 <= short and 2 * short <= burst_length and long >= 2 * short


@dataclass(frozen=True)
class VideoDraw:
    """The class-independent draws of one video."""

    num_frames: int
    size: int
    square_side: float
    square_top_left: tuple[float, float]
    duty_cycle: float
    phase: float  # fraction of a period, in [0, 1)
    seed: int  # the background and colour


def draw_video(seed_key: tuple) -> VideoDraw:
    rng = random.Random(repr(("frequency_pairs",) + tuple(seed_key)))
    num_frames = rng.randint(MIN_FRAMES, MAX_FRAMES)
    size = rng.choice(RESOLUTIONS)
    side = rng.uniform(*SQUARE_FRACTION) * size
    top_left = (rng.uniform(0, size - side), rng.uniform(0, size - side))
    return VideoDraw(num_frames=num_frames, size=size, square_side=side, square_top_left=top_left,
                     duty_cycle=rng.uniform(*DUTY_CYCLE), phase=rng.random(), seed=rng.getrandbits(32))


def square_on(period: int, duty_cycle: float, phase: float, frame_indices) -> np.ndarray:
    """bool per frame: a square wave of ``period`` frames, on for ``round(duty_cycle * period)`` frames of
    each period (at least 1, at most period - 1, so every cycle switches on and off), starting
    ``floor(phase * period)`` frames into the cycle."""
    on_frames = min(period - 1, max(1, round(duty_cycle * period)))
    shift = int(phase * period)
    return np.mod(np.asarray(frame_indices, dtype=np.int64) + shift, period) < on_frames


def render_blink(draw: VideoDraw, period: int) -> np.ndarray:
    """(N, H, W, 3) uint8: the background with the square shown in the frames where it is on."""
    content = draw_content(random.Random(draw.seed), draw.size, 2)
    size = draw.size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    top, left = draw.square_top_left
    # soft 1 px edges, as the discs of synthetic.py: sub-pixel sizes stay visible
    inside_y = np.clip(np.minimum(yy - top, top + draw.square_side - yy) + 0.5, 0.0, 1.0)
    inside_x = np.clip(np.minimum(xx - left, left + draw.square_side - xx) + 0.5, 0.0, 1.0)
    inside = (inside_y * inside_x)[..., None]
    lit = content.background_hw3 * (1 - inside) + np.array(content.colour, dtype=np.float32) * inside
    frames = np.where(square_on(period, draw.duty_cycle, draw.phase, range(draw.num_frames))[:, None, None, None],
                      lit[None], content.background_hw3[None])
    return (frames * 255 + 0.5).astype(np.uint8)


def render_video(seed_key: tuple, class_id: int, size: int = 0, num_frames: int = 0) -> np.ndarray:
    """(N, H, W, 3) uint8 frames of one video of ``class_id``; N and H = W are the video's own draws
    (``size`` and ``num_frames`` are ignored: the dataset's interface passes them)."""
    draw = draw_video(seed_key)
    if class_id < len(BLINK_PERIODS):
        return render_blink(draw, BLINK_PERIODS[class_id])
    content = draw_content(random.Random(draw.seed), draw.size, draw.num_frames)
    order_class = class_id - len(BLINK_PERIODS)
    return render_base_frames(content)[class_frame_order(order_class, draw.num_frames)]


DATASET = GeneratedDataset(
    prog="python -m vidprism_ds.data.frequency_pairs", description=__doc__.split("\n\n")[0],
    class_names=FREQUENCY_PAIRS_CLASSES, render_video=render_video,
    video_path="videos/{split}/{class_folder}/{split}_{k:05d}{extension}",
    train_per_class=32, val_per_class=8, size=32, frames=MAX_FRAMES, min_frames=4, even_frames=False,
    codec_option=False, fps=FPS)
make_dataset = DATASET.make_dataset
main = DATASET.main


if __name__ == "__main__":
    sys.exit(main())
