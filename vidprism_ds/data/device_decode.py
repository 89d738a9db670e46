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
- ``labels``: int64 (B,);
- ``frame_times``: float32 (B, T), only with ``data.clip_sampling`` dense or multirate (as the CPU path);
- ``keys``: B strings ``SHARD_PATH:KEY``, so a frame that fails to decode here can be named.

Damaged samples (``vidprism_ds.data.damage``): a worker reads the picked bytes but does not decode
them, so it skips (and counts against ``data.max_bad_samples``) a sample whose members cannot be read or
whose picked frames are not JPEG files at all (``jpeg.check_jpeg_markers``, the check the CPU path makes
too: no start marker, or no end marker: cut short). A frame that passes that check and still fails in
``decode_clips`` cannot be dropped there (the batch is on its way, and one rank's batch would shrink
while the others' do not): its clip is replaced by another clip of the same batch, named in a warning,
counted in the batch's ``damaged`` and against ``data.max_bad_samples`` (the trainer's ``DamageLog``
for the epoch).

``decode_clips`` runs on any device; the tests run it on the CPU, and ``bench/gpu_check.py`` compares
it on a GPU with the CPU path pixel by pixel.
"""

from __future__ import annotations

import logging
import random
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from vidprism_ds.data.clip_settings import (TrainClipSettings, clip_times, sample_clip_source, sampling_of,
                                            uses_frame_times)
from vidprism_ds.data.clips import sample_identity
from vidprism_ds.data.collate import collate_frame_times, damaged_count
from vidprism_ds.data.damage import DamageLog, DamagedSample, TooManyDamagedSamples, damage_marker, describe
from vidprism_ds.data.jpeg import check_jpeg_markers, decoder_message, read_member
from vidprism_ds.data.sample_filters import map_undamaged
from vidprism_ds.data.sampling import train_frame_picks
from vidprism_ds.data.seeding import sample_rng
from vidprism_ds.data.transforms import ClipAugmentation, draw_clip_augmentation, to_grayscale

logger = logging.getLogger(__name__)


class CorruptFrameError(TooManyDamagedSamples):
    """No clip of a device-decode batch decodes: there is nothing to replace the bad ones with."""


def picked_jpeg_bytes(frames_jpeg: Sequence, picks: Sequence[int]) -> list[bytes]:
    """The JPEG files of the picked frames, in pick order (a frame picked twice is read once).
    ``DamagedSample`` when one cannot be read or is not a whole JPEG file."""
    distinct = {}
    for p in sorted(set(picks)):
        distinct[p] = read_member(frames_jpeg[p])
        check_jpeg_markers(frames_jpeg[p].name, distinct[p])
    return [distinct[p] for p in picks]


def train_jpeg_clip(sample: dict, settings: TrainClipSettings, rng: random.Random) -> dict:
    """One training sample -> {"jpegs": T byte strings, "augment": 6 floats, "label", "key"[, "frame_times"]}.

    The draws match ``vidprism_ds.data.clips.train_clip``: the clip's frame picks first, then the clip's
    augmentation from the stored frame size (the shard's JSON records it: no decode needed here)."""
    jpegs, source = sample["frames_jpeg"], sample_clip_source(sample)
    picks = train_frame_picks(source, sampling_of(settings), rng)
    width, height = _frame_size(sample["meta"])
    aug = draw_clip_augmentation(width, height, rng, settings.crop_scale_min, settings.flip, settings.grayscale_prob)
    times = {"frame_times": clip_times(source, [picks])[0]} if uses_frame_times(settings) else {}
    return {"jpegs": picked_jpeg_bytes(jpegs, picks), "augment": augment_row(aug), "label": sample["label"],
            "key": f"{sample.get('__url__')}:{sample.get('__key__')}", **sample_identity(sample), **times}


def _frame_size(meta: dict) -> tuple[int, int]:
    # the crop box is drawn from the recorded size, so a sample without a usable one cannot be used here
    try:
        width, height = int(meta["width"]), int(meta["height"])
    except (KeyError, TypeError, ValueError):
        raise DamagedSample("json member has no usable width/height (needed by data.decode_device=cuda)") from None
    if width < 1 or height < 1:
        raise DamagedSample(f"json member records a {width}x{height} frame")
    return width, height


def augment_row(aug: ClipAugmentation) -> list[float]:
    return [*map(float, aug.box), float(aug.flip), float(aug.grayscale)]


def collate_jpeg_clips(samples: list[dict]) -> dict:
    blobs = [blob for sample in samples for blob in sample["jpegs"]]
    sizes = torch.tensor([0] + [len(blob) for blob in blobs], dtype=torch.int64)
    return {"jpeg_bytes": torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8),
            "jpeg_offsets": sizes.cumsum(0),
            "augment": torch.tensor([s["augment"] for s in samples], dtype=torch.float64),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            "keys": [s.get("key", "?") for s in samples], "damaged": damaged_count(samples),
            "index": torch.tensor([s.get("index", -1) for s in samples], dtype=torch.int64),
            **collate_frame_times(samples)}


def to_train_jpeg_clips(samples: Iterator[dict], settings: TrainClipSettings, seed: int, epoch: int) -> Iterator[dict]:
    """The pipeline stage that replaces ``clips.to_train_clips`` (the same per-sample ``sample_rng``, no decode)."""
    yield from map_undamaged(samples, lambda sample: train_jpeg_clip(
        sample, settings, sample_rng(seed, epoch, sample["__position__"])))


def crop_resize_float(frames_t3hw: torch.Tensor, box: Sequence[float], size: int) -> torch.Tensor:
    """uint8 (T, 3, H, W) on any device -> uint8 (T, 3, S, S): the CPU path's box and antialiased bilinear
    resize, computed in fp32 (CUDA's antialiased kernel takes no uint8) and rounded back."""
    left, top, right, bottom = (int(round(v)) for v in box)
    crop = frames_t3hw[:, :, top:bottom, left:right].float()
    resized = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def decode_clips(batch: dict[str, torch.Tensor], device: torch.device, image_size: int,
                 damage: Optional[DamageLog] = None) -> torch.Tensor:
    """A ``collate_jpeg_clips`` batch -> uint8 (B, T, 3, S, S) on ``device``.

    One batched ``decode_jpeg`` call for all B x T frames (on CUDA: nvJPEG), then each clip's crop box,
    flip and grayscale, as ``vidprism_ds.data.transforms.apply_clip_augmentation`` does on the CPU.
    A clip with a frame that does not decode is replaced in ``batch`` (``replace_bad_clips``); ``damage``
    (default: no limit) counts it against ``data.max_bad_samples``.
    """
    offsets = batch["jpeg_offsets"].tolist()  # a host tensor: no device sync
    blob = batch["jpeg_bytes"]
    files = [blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    num_clips = batch["augment"].shape[0]
    num_frames = len(files) // num_clips
    try:
        decoded = decode_jpeg(files, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as err:  # torchvision's error names no file: decode clip by clip to find it
        decoded = replace_bad_clips(batch, files, num_frames, device, err, damage)
    clips = []
    for c, row in enumerate(batch["augment"].tolist()):
        frames_t3hw = torch.stack(decoded[c * num_frames:(c + 1) * num_frames])
        clip = crop_resize_float(frames_t3hw, row[:4], image_size)
        if row[4]:
            clip = clip.flip(-1)
        if row[5]:
            clip = to_grayscale(clip)
        clips.append(clip)
    return torch.stack(clips)


def replace_bad_clips(batch: dict, files: list[torch.Tensor], num_frames: int, device: torch.device,
                      err: RuntimeError, damage: Optional[DamageLog]) -> list[torch.Tensor]:
    """After a batch failed to decode: each clip whose frames do not decode takes the frames, augmentation,
    label (and frame times) of the nearest good clip before it in the batch, or after it for the first.

    Why a clip of the same batch: the batch keeps its size on every rank (the global batch, DeepSpeed's
    gradient averaging and the expert-parallel all-to-alls stay as planned); the substitute is a real,
    correctly labelled sample of this epoch's stream, so the step sees only data it would see anyway (one
    sample counted twice), unlike a blank clip, which would teach the model a class for grey frames; and
    it depends on nothing but the batch, so a rerun replaces the same way. ``batch`` is changed in place
    (its ``damaged`` count grows by the clips replaced); the decoded frames come back in batch order."""
    keys = batch.get("keys") or [f"clip {c} of the batch (no keys in it)" for c in range(len(files) // num_frames)]
    decoded, bad = [], {}
    for clip in range(len(files) // num_frames):
        try:
            decoded.append(decode_jpeg(files[clip * num_frames:(clip + 1) * num_frames], mode=ImageReadMode.RGB,
                                       device=device))
        except RuntimeError as clip_err:
            decoded.append(None)
            bad[clip] = decoder_message(clip_err)
    good = [c for c, frames in enumerate(decoded) if frames is not None]
    if not good:
        raise CorruptFrameError(f"data.decode_device=cuda: no clip of the batch decodes ({decoder_message(err)}); "
                                f"the first: {keys[0]}")
    for clip, reason in bad.items():
        substitute = max((c for c in good if c < clip), default=good[0])
        shard, _, key = keys[clip].rpartition(":")
        marker = damage_marker({"__url__": shard, "__key__": key},
                               f"a frame does not decode ({reason}); replaced by {keys[substitute]} in its batch")
        if damage is not None:
            damage.record(marker)
        else:
            logger.warning("training: damaged sample replaced: %s", describe(marker))  # no limit given
        decoded[clip] = decoded[substitute]
        for name in ("augment", "labels", "frame_times"):
            if name in batch:
                batch[name][clip] = batch[name][substitute]
        keys[clip] = keys[substitute]
    batch["damaged"] = batch.get("damaged", 0) + len(bad)
    return [frame for frames in decoded for frame in frames]


def uses_device_decode(batch: dict) -> bool:
    return "jpeg_bytes" in batch
