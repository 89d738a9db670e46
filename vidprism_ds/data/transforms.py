"""Clip-consistent augmentation and multi-view evaluation crops.

Every random choice is drawn once per clip and applied to all of its frames (the same crop box, the same
flip, the same grayscale decision): a temporal model must not see the crop jump between frames.
Crop and resize happen in one PIL call per frame (``Image.resize(box=...)``), so no full-size resized
frame is ever built.

Outputs are float32 tensors normalised with CLIP's mean and std, laid out (T, 3, S, S).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# ITU-R 601 luma, as torchvision's rgb_to_grayscale
_LUMA = (0.299, 0.587, 0.114)

Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


@dataclass(frozen=True)
class ClipAugmentation:
    """The random choices for one training clip."""

    box: Box
    flip: bool
    grayscale: bool


def random_resized_crop_box(width: int, height: int, rng: random.Random, scale: tuple[float, float],
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Box:
    """Area fraction in ``scale`` and log-uniform aspect ratio, as torchvision's RandomResizedCrop
    (10 tries, then the largest centred crop of a clamped ratio)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def draw_clip_augmentation(width: int, height: int, rng: random.Random, scale_min: float, flip_allowed: bool,
                           grayscale_prob: float) -> ClipAugmentation:
    box = random_resized_crop_box(width, height, rng, (scale_min, 1.0))
    flip = flip_allowed and rng.random() < 0.5
    grayscale = rng.random() < grayscale_prob
    return ClipAugmentation(box=box, flip=flip, grayscale=grayscale)


def _crop_resize_stack(frames: Sequence[Image.Image], box: Box, size: int) -> np.ndarray:
    """(T, S, S, 3) uint8: the same box of every frame, resized to S x S."""
    return np.stack([np.asarray(f.convert("RGB").resize((size, size), Image.BILINEAR, box=box)) for f in frames])


def normalise(frames_thwc: np.ndarray, grayscale: bool = False) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W), optionally grayscale, CLIP-normalised."""
    x = torch.from_numpy(frames_thwc).float().div_(255.0)
    x = x.movedim(-1, -3)
    if grayscale:
        luma = (x * torch.tensor(_LUMA).view(3, 1, 1)).sum(dim=-3, keepdim=True)
        x = luma.expand_as(x).contiguous()
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return x.sub_(mean).div_(std)


def apply_clip_augmentation(frames: Sequence[Image.Image], aug: ClipAugmentation, size: int) -> torch.Tensor:
    """(T, 3, S, S) float32."""
    stack_thwc = _crop_resize_stack(frames, aug.box, size)
    if aug.flip:
        stack_thwc = stack_thwc[:, :, ::-1, :].copy()
    return normalise(stack_thwc, aug.grayscale)


def eval_crop_boxes(width: int, height: int, num_crops: int) -> list[Box]:
    """Boxes in source pixels equivalent to "resize the short side to S, then crop S x S" (the caller
    resizes each box to S x S).

    1 crop: centre. 3 crops: start, centre and end along the long side (the usual 3-crop test).
    4 crops: the four corners.
    """
    side = min(width, height)  # an S x S crop after the resize covers a short x short source square
    centre_left, centre_top = (width - side) / 2, (height - side) / 2
    if num_crops == 1:
        lefts_tops = [(centre_left, centre_top)]
    elif num_crops == 3:
        if width >= height:
            lefts_tops = [(0, 0), (centre_left, 0), (width - side, 0)]
        else:
            lefts_tops = [(0, 0), (0, centre_top), (0, height - side)]
    elif num_crops == 4:
        lefts_tops = [(0, 0), (width - side, 0), (0, height - side), (width - side, height - side)]
    else:
        raise ValueError(f"num_crops must be 1, 3 or 4, got {num_crops}")
    return [(left, top, left + side, top + side) for left, top in lefts_tops]


def eval_views(frames: Sequence[Image.Image], size: int, num_crops: int) -> torch.Tensor:
    """(num_crops, T, 3, S, S) float32: every spatial crop of one temporal clip."""
    width, height = frames[0].size
    return torch.stack([normalise(_crop_resize_stack(frames, box, size))
                        for box in eval_crop_boxes(width, height, num_crops)])
