"""Training batches moved to the device one batch ahead, on a side stream.

Without it a step starts by copying its batch to the GPU (or, with ``data.decode_device=cuda``, decoding
its JPEGs there) on the compute stream, and the forward waits for that. ``DeviceBatches`` queues the next
batch's host-to-device copies and GPU decode on a stream of their own before the current batch is handed
to the step, so they overlap the step's compute; the step's stream waits for that stream only when it
takes the batch (``wait_stream``), and every tensor made there is marked as used by the step's stream
(``record_stream``) so the caching allocator does not hand its memory out while the step still reads it.

On the CPU the same code runs without streams (the copies are no-ops): the look-ahead, the order and
what a batch holds are the same, which is what the tests check.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Optional

import torch

from vidprism_ds.data.damage import DamageLog
from vidprism_ds.data.device_decode import decode_clips, uses_device_decode


def batch_to_device(batch: dict, device: torch.device, image_size: int, decode_log: Optional[DamageLog] = None) -> dict:
    """A loader batch's tensors on ``device``: ``frames_u8`` (uint8 (B, T, 3, S, S): copied, or with
    ``data.decode_device=cuda`` decoded there from the batch's JPEG bytes, which may replace damaged clips in
    ``batch``), ``labels``, ``frame_times`` (fp32 seconds, or None for segment clips: bf16 cannot tell apart
    two consecutive source frames a few seconds into a video), and ``host``, the loader batch itself.
    The copies are asynchronous when the loader pinned the batch."""
    if uses_device_decode(batch):
        frames_u8 = decode_clips(batch, device, image_size, decode_log)
    else:
        frames_u8 = batch["frames"].to(device, non_blocking=True)
    frame_times = batch.get("frame_times")
    return {"frames_u8": frames_u8, "labels": batch["labels"].to(device, non_blocking=True),
            "frame_times": None if frame_times is None else frame_times.to(device, torch.float32, non_blocking=True),
            "host": batch}


class DeviceBatches:
    """Iterates ``prepare(batch)`` for each of ``batches`` in order, preparing batch n+1 (on a side CUDA
    stream) before yielding batch n. ``prepare`` moves a loader batch to ``device`` and returns a dict of
    tensors; it runs on the side stream, so it must not synchronise with the compute stream."""

    def __init__(self, batches: Iterable[dict], prepare: Callable[[dict], dict], device: torch.device):
        self.batches = batches
        self.prepare = prepare
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[dict]:
        side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        source = iter(self.batches)
        ahead = self._stage(next(source, None), side)
        while ahead is not None:
            current = ahead
            ahead = self._stage(next(source, None), side)  # queued before the step below is
            if side is not None:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_stream(side)
                for value in current.values():
                    if isinstance(value, torch.Tensor) and value.device.type == "cuda":
                        value.record_stream(compute)
            yield current

    def _stage(self, batch: dict | None, side) -> dict | None:
        if batch is None:
            return None
        with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
            return self.prepare(batch)


__all__ = ["DeviceBatches", "batch_to_device"]
