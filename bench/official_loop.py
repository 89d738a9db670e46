"""The official VidPrism training step, rebuilt for timing beside ours (``bench/gpu_check.py``, section
``official_loop``).

What the official ``train.py`` does per step, as read from the official repository (nothing copied): the
CLIP tower kept in fp32 and run under CUDA AMP autocast (fp16) with a ``GradScaler``; the tower and the
VidPrism head each wrapped in ``DistributedDataParallel(find_unused_parameters=True)``; no activation
checkpointing; the loss ``CE + 0.01 x contrastive (normalised video feature vs class text) + 0.005 x
diversity + 0.1 x rank`` (its gate loss is 0 for the head it trains); AdamW; and one ``loss.item()`` a
step for its log line. The tower here is open_clip's visual tower with ``nn.MultiheadAttention`` (the
official code's own copy of OpenAI's CLIP has the same blocks), the head the official module itself,
imported from the user's checkout (``--official-repo``) and loaded with the same weights as ours
(``bench.head._official_module``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# The official loss weights (its train.py), for the terms its head returns.
CONTRASTIVE_WEIGHT = 0.01
DIVERSITY_WEIGHT = 0.005
RANK_WEIGHT = 0.1


class OfficialModel(nn.Module):
    """Tower + official head, called as the official loop calls them."""

    def __init__(self, tower: nn.Module, head: nn.Module):
        super().__init__()
        self.tower, self.head = tower, head

    def forward(self, frames_btchw: torch.Tensor):
        batch, frames = frames_btchw.shape[:2]
        features_nd = self.tower(frames_btchw.flatten(0, 1))
        return self.head(features_nd.view(batch, frames, -1), batch, frames)


def build_official_model(arch: str, image_size: int, num_classes: int, official_repo: Path,
                         seed: int = 0) -> OfficialModel:
    from bench.head import _official_module
    from vidprism_ds.config.schema import BackboneConfig, HeadConfig
    from vidprism_ds.model.backbone import build_clip
    from vidprism_ds.model.head import VidPrismHead

    visual = build_clip(BackboneConfig(arch=arch, image_size=image_size), seed=seed).visual  # open_clip's blocks
    torch.manual_seed(seed)
    ours = VidPrismHead(int(visual.output_dim), num_classes, HeadConfig(mode="official"))
    return OfficialModel(visual, _official_module(official_repo, ours, int(visual.output_dim), num_classes))


def official_loop_times(model: OfficialModel, frames_btchw: torch.Tensor, labels_b: torch.Tensor,
                        text_cd: torch.Tensor, warmup: int, repeats: int) -> dict:
    """Median step time of the official loop on one batch already on the device (``model`` on it too)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = frames_btchw.device
    on_gpu = device.type == "cuda"
    wrap = (lambda m: DDP(m, device_ids=[device.index] if on_gpu else None, find_unused_parameters=True)) \
        if dist.is_initialized() else (lambda m: m)
    tower, head = wrap(model.tower), wrap(model.head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=on_gpu)
    # fp16 autocast as the official "amp" precision; on the CPU (the dry run) bf16, the CPU's autocast type
    autocast = torch.autocast(device.type, dtype=torch.float16 if on_gpu else torch.bfloat16)
    text_cd = F.normalize(text_cd.float(), dim=1)
    batch, frames = frames_btchw.shape[:2]

    def step() -> float:
        with autocast:
            features_nd = tower(frames_btchw.flatten(0, 1))
            logits, _, fused_bd, diversity, rank = head(features_nd.view(batch, frames, -1), batch, frames)
            contrastive = F.cross_entropy(F.normalize(fused_bd, dim=1) @ text_cd.t(), labels_b)
            loss = (F.cross_entropy(logits, labels_b) + CONTRASTIVE_WEIGHT * contrastive
                    + DIVERSITY_WEIGHT * diversity + RANK_WEIGHT * rank)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()  # the official log line reads the loss every step

    for _ in range(warmup):
        step()
    if on_gpu:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if on_gpu:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    return {"step_ms": round(1e3 * step_s, 1), "clips_per_s": round(batch / step_s, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2) if on_gpu else None}


__all__ = ["OfficialModel", "build_official_model", "official_loop_times"]
