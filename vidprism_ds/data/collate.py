"""Collation: a list of samples -> one batch of stacked tensors (training and evaluation)."""

from __future__ import annotations

import time
from typing import Iterator

import torch
from torch.utils.data import default_collate


def with_cpu_seconds(batches: Iterator[dict]) -> Iterator[dict]:
    """A pipeline stage after batching: each batch with "cpu_seconds", the CPU time its process (a loader
    worker, or the training process with 0 workers) spent making it, from reading the shards to collating
    (a Python float: the trainer adds it up without a tensor read). ``vidprism_ds.train.loader_pace``
    compares it with the step's pace."""
    started = time.process_time()
    for batch in batches:
        batch["cpu_seconds"] = time.process_time() - started
        yield batch
        started = time.process_time()  # not the consumer's time: it runs between the yield and here


def collate_frame_times(samples: list[dict]) -> dict[str, torch.Tensor]:
    """{"frame_times": (B, ...) float32} when the clips carry times (dense, multirate), else nothing."""
    if "frame_times" not in samples[0]:
        return {}
    return {"frame_times": torch.stack([s["frame_times"] for s in samples])}


def damaged_count(samples: list[dict]) -> int:
    """The damaged samples a batch stands for (``vidprism_ds.data.damage.DAMAGED``): a Python int, not a
    tensor, so that the trainer adds it up without reading a tensor (a host sync on a GPU run)."""
    return sum(s.get("damaged", 0) for s in samples)


def collate_train(samples: list[dict]) -> dict[str, torch.Tensor]:
    # default_collate stacks straight into shared memory inside a worker: no extra copy on the way out
    return {"frames": default_collate([s["frames"] for s in samples]),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            # each clip's manifest index (-1 where unknown): which samples a batch holds, for tests and logs
            "index": torch.tensor([s.get("index", -1) for s in samples], dtype=torch.int64),
            "damaged": damaged_count(samples), **collate_frame_times(samples)}


def collate_eval(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {"frames": default_collate([s["frames"] for s in samples]),
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            "valid": torch.tensor([s["valid"] for s in samples], dtype=torch.bool),
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.int64),
            "damaged": damaged_count(samples), **collate_frame_times(samples)}
