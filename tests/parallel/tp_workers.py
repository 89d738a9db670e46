"""Bodies of the tensor-parallel tests (run on every rank by harness.run_workers)."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from vidprism_ds.config.schema import BackboneConfig
from vidprism_ds.model.backbone import build_frame_encoder
from vidprism_ds.parallel import init_expert_parallel
from vidprism_ds.parallel.tensor_parallel import TP_LAYOUT_ATTR, apply_tensor_parallel, tp_full_name

IMAGE_SIZE = 32


def _gathered(tensor: torch.Tensor, ctx) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(ctx.tp_size)]
    dist.all_gather(parts, tensor.contiguous(), group=ctx.tp_group)
    return parts


def _full(param: torch.Tensor, tensor: torch.Tensor, ctx) -> torch.Tensor:
    """``tensor`` (the parameter or its gradient) as the tp_size 1 model has it."""
    layout = getattr(param, TP_LAYOUT_ATTR, None)
    return tensor if layout is None else layout.assemble(_gathered(tensor, ctx))


def tower_forward_backward(tp_size: int) -> dict:
    """The tiny frame encoder made tensor-parallel against its unsharded copy on the same clips: output,
    every weight and every gradient (sharded ones gathered and assembled) as max abs differences."""
    ctx = init_expert_parallel(1, tp_size)
    encoder, _ = build_frame_encoder(BackboneConfig(arch="tiny", image_size=IMAGE_SIZE), seed=0)
    reference = copy.deepcopy(encoder)
    blocks = apply_tensor_parallel(encoder, ctx)
    generator = torch.Generator().manual_seed(5)
    clips = torch.randn(2, 3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    readout = torch.randn(reference(clips).shape, generator=generator)
    reference.zero_grad()
    (reference(clips) * readout).sum().backward()
    out = encoder(clips)
    (out * readout).sum().backward()

    ref_params = dict(reference.named_parameters())
    report = {"blocks": blocks, "out_diff": (out - reference(clips)).abs().max().item(), "weight_diffs": {},
              "grad_diffs": {}, "sharded": [], "local_shapes": {}}
    for name, param in encoder.named_parameters():
        full_name = tp_full_name(encoder, name)
        if hasattr(param, TP_LAYOUT_ATTR):
            report["sharded"].append(full_name)
            report["local_shapes"][full_name] = tuple(param.shape)
        ref = ref_params[full_name]
        report["weight_diffs"][full_name] = (_full(param, param.detach(), ctx) - ref).abs().max().item()
        report["grad_diffs"][full_name] = (_full(param, param.grad, ctx) - ref.grad).abs().max().item()
    report["state_keys"] = sorted(tp_full_name(encoder, k) for k in encoder.state_dict())
    report["reference_keys"] = sorted(reference.state_dict())
    return report


def _replica_divergence(model: torch.nn.Module, ctx) -> float:
    """Max abs difference of the replicated (not sharded) parameters between the ranks of the TP group."""
    worst = 0.0
    for param in model.parameters():
        if ctx.tp_size > 1 and not hasattr(param, TP_LAYOUT_ATTR):
            copies = _gathered(param.detach(), ctx)
            worst = max(worst, max((c - copies[0]).abs().max().item() for c in copies))
    return worst


def train_on_global_batches(overrides: list[str], ds_config_path: str, export_path: str) -> dict:
    """The Trainer on world-size independent global batches (tests.train.workers.GlobalBatchSlices, cut by
    data-parallel rank), then exported; per-step losses, the export (rank 0) and what it printed."""
    import contextlib
    import io

    from tests.train.workers import GlobalBatchSlices
    from vidprism_ds.config import load_config
    from vidprism_ds.train.ds_config import read_ds_config
    from vidprism_ds.train.trainer import Trainer

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        trainer = Trainer(load_config(None, overrides), read_ds_config(ds_config_path))
        plan, cfg = trainer.batch, trainer.cfg
        trainer.train_loader = GlobalBatchSlices(len(trainer.train_loader), plan.micro_batch, plan.grad_accum,
                                                 trainer.dp_rank, plan.dp_size, cfg.data.num_frames,
                                                 cfg.data.image_size, trainer.num_classes)
        result = trainer.fit()
        exported = trainer.export(export_path)
    trainer.reporter.finish()
    return {"losses": [h["total"] for h in result.history], "steps": [h["step"] for h in result.history],
            "resumed_from": result.resumed_from, "optimizer_restored": trainer.checkpoints.optimizer_restored,
            "grad_accum": plan.grad_accum,
            "dp_rank": trainer.dp_rank, "dp_size": trainer.dp_size,
            "replica_divergence": _replica_divergence(trainer.engine.module, trainer.ctx),
            "export": torch.load(exported, weights_only=True) if exported else None, "printed": printed.getvalue()}
