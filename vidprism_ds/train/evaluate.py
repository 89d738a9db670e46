"""Multi-view evaluation: top-1/top-5 and per-class accuracy reduced over ranks, confusion matrix.

Each video arrives with V = clips x crops views; the softmax of the views is averaged (the usual
Kinetics protocol). Padding samples (``valid`` False) that give every rank the same number of equal
batches are excluded from every count. Zero-shot evaluation classifies with the cosine between the
projection head's output and the class text embeddings of the evaluated label set instead of the
classifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
# Imported with the trainer, before the first step, rather than at the first report: importing matplotlib
# enters warnings.catch_warnings, which would make a warning already shown in training show again.
from matplotlib.figure import Figure

from vidprism_ds.analysis.plots import heatmap, save_figure
from vidprism_ds.data.transforms import frames_to_device

# CLIP's logit scale: makes the softmax over cosine similarities as peaked as CLIP's own.
ZERO_SHOT_SCALE = 100.0
TOP_K = (1, 5)
# Above this many classes the confusion matrix's cells are too small for their numbers.
MAX_ANNOTATED_CLASSES = 20


def reported_top_k(num_classes: int) -> tuple[int, ...]:
    """The k whose top-k accuracy says something about the model: k below the number of classes. With k
    classes or fewer every video's class is among the top k, and top-k is 1.0 whatever the model does."""
    return tuple(k for k in TOP_K if k < num_classes)


def top_k_text(accuracy_by_k: Mapping[int, float], num_classes: int, digits: int = 4, sep: str = " ") -> str:
    """``top-1 0.7500 top-5 0.9500``, leaving out the k that ``reported_top_k`` leaves out."""
    return sep.join(f"top-{k} {accuracy_by_k[k]:.{digits}f}" for k in reported_top_k(num_classes))


@dataclass
class EvalResult:
    top1: float
    top5: float
    samples: int
    per_class_accuracy: list[float] = field(default_factory=list)
    confusion: Optional[torch.Tensor] = None  # (C, C) counts, row = true class

    def as_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "samples": self.samples}

    @property
    def num_classes(self) -> int:
        return len(self.per_class_accuracy)

    @property
    def accuracy_by_k(self) -> dict[int, float]:
        return {1: self.top1, 5: self.top5}


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
        self.top5_correct = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, probs_bc: torch.Tensor, labels_b: torch.Tensor, valid_b: torch.Tensor) -> None:
        # padding samples get weight 0 instead of being indexed away: a boolean mask would make the
        # shapes data-dependent, i.e. a host sync per batch on a GPU
        probs_bc = probs_bc.float()
        labels_b = labels_b.to(self.device, non_blocking=True)
        weight_b = valid_b.to(self.device, torch.float64, non_blocking=True)
        k = min(5, self.num_classes)
        top_bk = probs_bc.topk(k, dim=-1).indices
        self.top5_correct += ((top_bk == labels_b[:, None]).any(dim=-1) * weight_b).sum()
        flat_b = labels_b * self.num_classes + top_bk[:, 0]
        # index_add_, not bincount: CUDA's bincount reads the input's maximum back to the host
        self.confusion.view(-1).index_add_(0, flat_b, weight_b)

    def reduce(self, world_size: int, group=None) -> EvalResult:
        packed = torch.cat([self.confusion.flatten(), self.top5_correct[None]])
        if world_size > 1:
            dist.all_reduce(packed, group=group)
        packed = packed.cpu()  # the one host read of an evaluation
        confusion = packed[:-1].view(self.num_classes, self.num_classes)
        total = float(confusion.sum())
        per_class_total = confusion.sum(dim=1)
        per_class = (confusion.diagonal() / per_class_total.clamp(min=1)).tolist()
        return EvalResult(top1=float(confusion.diagonal().sum()) / max(total, 1.0),
                          top5=float(packed[-1]) / max(total, 1.0), samples=int(total),
                          per_class_accuracy=per_class, confusion=confusion.to(torch.int64))


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
def evaluate(model, loader, num_classes: int, device: torch.device, dtype: torch.dtype, world_size: int,
             text_cd: Optional[torch.Tensor] = None, chunk: int = 16, progress: bool = False,
             group=None) -> EvalResult:
    """Every rank calls it (the expert-parallel model and the reductions are collective).

    ``world_size`` and ``group`` are the data-parallel ones: with tensor parallelism the ranks of one
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
    model.train(was_training)
    return acc.reduce(world_size, group)


def write_eval_report(result: EvalResult, class_names: list[str], out_dir: Path) -> None:
    """``metrics.json`` (top-k as ``reported_top_k`` allows, per-class accuracy) and ``confusion.png``
    (row-normalised, the fractions written in the cells up to ``MAX_ANNOTATED_CLASSES`` classes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = result.num_classes
    names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    top_k = {f"top{k}": result.accuracy_by_k[k] for k in reported_top_k(num_classes)}
    (out_dir / "metrics.json").write_text(json.dumps({
        **top_k, "samples": result.samples, "num_classes": num_classes,
        "per_class_accuracy": dict(zip(names, result.per_class_accuracy))}, indent=1))
    confusion = result.confusion.double()
    normalised = (confusion / confusion.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    size = min(20.0, 3.0 + 0.25 * num_classes)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    title = f"{top_k_text(result.accuracy_by_k, num_classes, digits=3, sep='  ')}  ({result.samples} videos)"
    image = heatmap(ax, normalised, names, names, title.strip(), vmin=0.0, vmax=1.0,
                    annotate=num_classes <= MAX_ANNOTATED_CLASSES, tick_labels=num_classes <= 50)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class's videos")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    save_figure(fig, out_dir / "confusion.png", dpi=100)
