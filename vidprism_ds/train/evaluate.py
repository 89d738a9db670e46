"""Multi-view evaluation: top-k and per-class accuracy reduced over ranks, and the confusion matrix.

Each video arrives with V = clips x crops views; the softmax of the views is averaged (the usual
Kinetics protocol). Padding samples (``valid`` False) that give every rank the same number of equal
batches are excluded from every count. Zero-shot evaluation classifies with the cosine between the
projection head's output and the class text embeddings of the evaluated label set instead of the
classifier. The result (``vidprism_ds.analysis.eval_result.EvalResult``) is written to files by
``vidprism_ds.analysis.eval_report``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vidprism_ds.analysis.eval_result import TOP_K, EvalResult
from vidprism_ds.data.transforms import frames_to_device

# CLIP's logit scale: makes the softmax over cosine similarities as peaked as CLIP's own.
ZERO_SHOT_SCALE = 100.0


class EvalAccumulator:
    """Counts on this rank, kept on ``device``; ``reduce`` sums them over ranks.

    Everything stays on the model's device: no per-batch host copies, and the reduction hands NCCL a
    device tensor (NCCL groups take no CPU tensors).
    """

    def __init__(self, num_classes: int, device: torch.device = torch.device("cpu")):
        self.num_classes = num_classes
        self.device = device
        # float64 counts: exact up to 2^53 videos; NCCL and gloo both reduce float64
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
        # videos whose class is among the k highest scores, for every k of TOP_K after the first (TOP_K
        # starts at 1, and top-1 is the confusion matrix's diagonal)
        self.top_k_correct = torch.zeros(len(TOP_K) - 1, dtype=torch.float64, device=device)
        self.damaged = 0  # damaged samples this rank's batches stood in for (a host count from the loader)

    def add(self, probs_bc: torch.Tensor, labels_b: torch.Tensor, valid_b: torch.Tensor) -> None:
        # padding samples get weight 0 instead of being indexed away: a boolean mask would make the
        # shapes data-dependent, i.e. a host sync per batch on a GPU
        probs_bc = probs_bc.float()
        labels_b = labels_b.to(self.device, non_blocking=True)
        weight_b = valid_b.to(self.device, torch.float64, non_blocking=True)
        top_bk = probs_bc.topk(min(max(TOP_K), self.num_classes), dim=-1).indices  # highest score first
        hit_bk = top_bk == labels_b[:, None]
        for i, k in enumerate(TOP_K[1:]):
            self.top_k_correct[i] += (hit_bk[:, :k].any(dim=-1) * weight_b).sum()
        flat_b = labels_b * self.num_classes + top_bk[:, 0]
        # index_add_, not bincount: CUDA's bincount reads the input's maximum back to the host
        self.confusion.view(-1).index_add_(0, flat_b, weight_b)

    def reduce(self, dp_size: int, group=None) -> EvalResult:
        damaged = torch.tensor([float(self.damaged)], dtype=torch.float64, device=self.device)
        packed = torch.cat([self.confusion.flatten(), self.top_k_correct, damaged])
        if dp_size > 1:
            dist.all_reduce(packed, group=group)
        packed = packed.cpu()  # the one host read of an evaluation
        confusion = packed[:self.num_classes ** 2].view(self.num_classes, self.num_classes)
        total = float(confusion.sum())
        per_class_total = confusion.sum(dim=1)
        per_class = (confusion.diagonal() / per_class_total.clamp(min=1)).tolist()
        correct_by_k = [float(confusion.diagonal().sum())] + packed[self.num_classes ** 2:-1].tolist()
        return EvalResult(accuracy_by_k={k: correct / max(total, 1.0) for k, correct in zip(TOP_K, correct_by_k)},
                          samples=int(total), per_class_accuracy=per_class, confusion=confusion.to(torch.int64),
                          damaged_samples=int(packed[-1]))


def video_probabilities(model, frames_bvtchw: torch.Tensor, text_cd: Optional[torch.Tensor], chunk: int,
                        device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32,
                        frame_times_bvt: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 (B, V, T, 3, H, W) on the host -> (B, C) view-averaged class probabilities on ``device``.

    ``chunk`` clips at a time go to the device, are normalised there and run through the model, so the
    device holds one chunk of frames whatever V is. Logits and softmax are fp32. ``frame_times_bvt``
    (dense and multirate clips): each view's frame times in seconds, (B, V, T), cut into the same chunks
    as the clips and passed to the model in fp32.
    """
    batch, views = frames_bvtchw.shape[:2]
    clips = frames_bvtchw.flatten(0, 1)
    if frame_times_bvt is not None and frame_times_bvt.shape != frames_bvtchw.shape[:3]:
        raise ValueError(f"frame_times has shape {tuple(frame_times_bvt.shape)}, the views' frames "
                         f"{tuple(frames_bvtchw.shape[:3])} (B, V, T): one time per frame of every view")
    clip_times = frame_times_bvt.flatten(0, 1) if frame_times_bvt is not None else None
    text_unit_dc = F.normalize(text_cd.float(), dim=-1).t() if text_cd is not None else None
    probs = []
    for start in range(0, clips.shape[0], chunk):
        clips_on_device = frames_to_device(clips[start:start + chunk], device, dtype)
        if clip_times is None:  # segment clips: the model's call without times, the paper's path
            out = model(clips_on_device)
        else:
            out = model(clips_on_device, frame_times=clip_times[start:start + chunk].to(device, torch.float32))
        if text_unit_dc is None:
            logits = out.logits.float()
        else:
            logits = ZERO_SHOT_SCALE * F.normalize(out.projection.float(), dim=-1) @ text_unit_dc
        probs.append(logits.softmax(dim=-1))
    return torch.cat(probs).view(batch, views, -1).mean(dim=1)


@torch.no_grad()
def evaluate(model, loader, num_classes: int, device: torch.device, dtype: torch.dtype, dp_size: int,
             text_cd: Optional[torch.Tensor] = None, chunk: int = 16, progress: bool = False,
             group=None) -> EvalResult:
    """Every rank calls it (the expert-parallel model and the reductions are collective).

    ``dp_size`` and ``group`` are the data-parallel size and group: with tensor parallelism the ranks of one
    tensor-parallel group evaluate the same videos, so counts are summed over the data-parallel group only
    (``group`` None: all ranks).

    ``loader`` yields uint8 batches (``vidprism_ds.data.loaders.build_eval_loader``); ``chunk`` is the
    number of clips per forward pass."""
    was_training = model.training
    model.eval()
    acc = EvalAccumulator(num_classes, device)
    batches = loader
    if progress:  # a bar on a terminal, plain lines in a log file
        from vidprism_ds.utils.progress import progress_bar
        batches = progress_bar(loader, total=len(loader), desc="eval", unit="batch", leave=False)
    for batch in batches:
        probs = video_probabilities(model, batch["frames"], text_cd, chunk, device, dtype,
                                    frame_times_bvt=batch.get("frame_times"))
        acc.add(probs, batch["labels"], batch["valid"])
        acc.damaged += batch.get("damaged", 0)
    model.train(was_training)
    return acc.reduce(dp_size, group)
