"""Clip-consistent augmentation, multi-view evaluation crops, and CLIP normalisation.

Every random choice is drawn once per clip and applied to all of its frames (the same crop box, the same
flip, the same grayscale decision): a temporal model must not see the crop jump between frames.

Clips stay uint8 (T, 3, H, W) through cropping and resizing (torch's uint8 antialiased bilinear kernel on
channels-last memory, ~3x faster than PIL per frame) and are shipped from the loader workers as uint8:
a quarter of the bytes of float32 through shared memory. They stay uint8 up to the model's device:
``frames_to_device`` copies a batch there (asynchronously from pinned memory) and ``normalise`` turns it
into CLIP-normalised frames of the training dtype on that device.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import rgb_to_grayscale

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_SCALE = 1.0 / (255.0 * torch.tensor(CLIP_STD).view(3, 1, 1))
_SHIFT = torch.tensor(CLIP_MEAN).view(3, 1, 1) / torch.tensor(CLIP_STD).view(3, 1, 1)

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


def crop_resize(frames_t3hw: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (T, 3, S, S): the same box of every frame, resized (antialiased)."""
    left, top, right, bottom = (int(round(v)) for v in box)
    crop = frames_t3hw[:, :, top:bottom, left:right].contiguous(memory_format=torch.channels_last)
    return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def to_grayscale(frames_t3hw: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> uint8 ITU-R 601 luma on 3 channels (torchvision's integer kernel: 3x faster than
    going through float32)."""
    return rgb_to_grayscale(frames_t3hw, num_output_channels=3)


def apply_clip_augmentation(frames_t3hw: torch.Tensor, aug: ClipAugmentation, size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> contiguous uint8 (T, 3, S, S)."""
    clip = crop_resize(frames_t3hw, aug.box, size)
    if aug.flip:
        clip = clip.flip(-1)
    if aug.grayscale:
        clip = to_grayscale(clip)
    return clip.contiguous()


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


def eval_views(frames_t3hw: torch.Tensor, size: int, num_crops: int) -> torch.Tensor:
    """uint8 (num_crops, T, 3, S, S): every spatial crop of one temporal clip."""
    height, width = frames_t3hw.shape[-2:]
    return torch.stack([crop_resize(frames_t3hw, box, size).contiguous()
                        for box in eval_crop_boxes(width, height, num_crops)])


def normalise(frames_uint8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> CLIP-normalised ``dtype``, same shape, on the input's device.

    Meant to run where the model runs: the loader hands over uint8 (a quarter of fp32's bytes over PCIe
    and through pinned memory) and the GPU does this in one fused elementwise pass. The arithmetic is in
    fp32, (x / 255 - mean) / std folded into one multiply and one subtract, then cast to ``dtype``.
    """
    scale = _SCALE.to(frames_uint8.device)
    shift = _SHIFT.to(frames_uint8.device)
    x = torch.empty(frames_uint8.shape, dtype=torch.float32, device=frames_uint8.device)
    x.copy_(frames_uint8)
    x = x.mul_(scale).sub_(shift)
    return x if dtype == torch.float32 else x.to(dtype)


def frames_to_device(frames_uint8: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A uint8 batch from the loader -> CLIP-normalised ``dtype`` on ``device``.

    The copy is asynchronous when the batch sits in pinned memory (the loader pins it on GPU runs), so
    the host only queues it; normalisation then runs on the device, not on a training-process core.
    """
    return normalise(frames_uint8.to(device, non_blocking=True), dtype)
