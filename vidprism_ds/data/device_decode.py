"""JPEG decode on the model's device (``data.decode_device=cuda``): workers ship bytes, the GPU decodes.

At 32 frames of 224 px a clip costs ~50 ms of a CPU core in the loader, most of it JPEG decode and the
antialiased resize. With ``decode_device=cuda`` the workers only pick the frames and draw the clip's
augmentation (the same random draws, in the same order, as the CPU path: a run with the same seed sees
the same frames and crop boxes), and ship the picked frames' JPEG bytes. The training process decodes a
whole batch in one call (``torchvision.io.decode_jpeg`` on a CUDA device: nvJPEG, batched), then crops,
resizes, flips and greys each clip there.

Batch format between the two (one tensor each, so a batch crosses the worker boundary as a handful of
shared-memory blocks rather than B x T small tensors):

- ``jpeg_bytes``: uint8 (N,), every picked frame's JPEG file back to back, clip-major;
- ``jpeg_offsets``: int64 (B * T + 1,), frame i is ``jpeg_bytes[offsets[i]:offsets[i + 1]]``;
- ``augment``: float64 (B, 6): crop box left, top, right, bottom (source pixels), flip, grayscale;
- ``labels``: int64 (B,).

``decode_clips`` runs on any device; the tests run it on the CPU, and ``bench/gpu_check.py`` compares
it on a GPU with the CPU path pixel by pixel.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from vidprism_ds.data.sampling import segment_indices
from vidprism_ds.data.stages import TrainClipSettings, current_slot, seeded_rng
from vidprism_ds.data.transforms import ClipAugmentation, draw_clip_augmentation, to_grayscale

AUGMENT_FIELDS = 6  # left, top, right, bottom, flip, grayscale


def picked_jpeg_bytes(frames_jpeg: Sequence, picks: Sequence[int]) -> list[bytes]:
    """The JPEG files of the picked frames, in pick order (a frame picked twice is read once)."""
    distinct = {p: frames_jpeg[p].read() for p in sorted(set(picks))}
    return [distinct[p] for p in picks]


def train_jpeg_clip(sample: dict, settings: TrainClipSettings, rng: random.Random) -> dict:
    """One training sample -> {"jpegs": T byte strings, "augment": 6 floats, "label"}.

    The draws match ``vidprism_ds.data.stages.train_clip``: segment positions first, then the clip's
    augmentation from the stored frame size (the shard's JSON records it: no decode needed here)."""
    jpegs = sample["frames_jpeg"]
    picks = segment_indices(len(jpegs), settings.num_frames, rng)
    width, height = int(sample["meta"]["width"]), int(sample["meta"]["height"])
    aug = draw_clip_augmentation(width, height, rng, settings.crop_scale_min, settings.flip, settings.grayscale_prob)
    return {"jpegs": picked_jpeg_bytes(jpegs, picks), "augment": augment_row(aug), "label": sample["label"]}


def augment_row(aug: ClipAugmentation) -> list[float]:
    return [*map(float, aug.box), float(aug.flip), float(aug.grayscale)]


def collate_jpeg_clips(samples: list[dict]) -> dict[str, torch.Tensor]:
    blobs = [blob for sample in samples for blob in sample["jpegs"]]
    sizes = torch.tensor([0] + [len(blob) for blob in blobs], dtype=torch.int64)
    return {"jpeg_bytes": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8),
            "jpeg_offsets": sizes.cumsum(0),
            "augment": torch.tensor([s["augment"] for s in samples], dtype=torch.float64),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64)}


def to_train_jpeg_clips(samples: Iterator[dict], settings: TrainClipSettings, seed: int, epoch: int, rank: int,
                        world_size: int) -> Iterator[dict]:
    """The pipeline stage that replaces ``stages.to_train_clips`` (same random stream, no decode)."""
    rng = seeded_rng(seed, epoch, current_slot(rank, world_size).index, "augment")
    for sample in samples:
        yield train_jpeg_clip(sample, settings, rng)


def crop_resize_float(frames_t3hw: torch.Tensor, box: Sequence[float], size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) on any device -> uint8 (T, 3, S, S): the CPU path's box and antialiased bilinear
    resize, computed in fp32 (CUDA's antialiased kernel takes no uint8) and rounded back."""
    left, top, right, bottom = (int(round(v)) for v in box)
    crop = frames_t3hw[:, :, top:bottom, left:right].float()
    resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def decode_clips(batch: dict[str, torch.Tensor], device: torch.device, image_size: int) -> torch.Tensor:
    """A ``collate_jpeg_clips`` batch -> uint8 (B, T, 3, S, S) on ``device``.

    One batched ``decode_jpeg`` call for all B x T frames (on CUDA: nvJPEG), then each clip's crop box,
    flip and grayscale, as ``vidprism_ds.data.transforms.apply_clip_augmentation`` does on the CPU.
    """
    offsets = batch["jpeg_offsets"].tolist()  # a host tensor: no device sync
    blob = batch["jpeg_bytes"]
    files = [blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    augment = batch["augment"].tolist()
    num_clips = len(augment)
    num_frames = len(files) // num_clips
    decoded = decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
    clips = []
    for c, row in enumerate(augment):
        frames_t3hw = torch.stack(decoded[c * num_frames:(c + 1) * num_frames])
        clip = crop_resize_float(frames_t3hw, row[:4], image_size)
        if row[4]:
            clip = clip.flip(-1)
        if row[5]:
            clip = to_grayscale(clip)
        clips.append(clip)
    return torch.stack(clips)


def uses_device_decode(batch: dict) -> bool:
    return "jpeg_bytes" in batch
