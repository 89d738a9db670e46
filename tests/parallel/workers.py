"""Bodies of the multi-process tests (run on every rank by harness.run_workers)."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F

from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.parallel import init_expert_parallel, parallelize_model
from vidprism_ds.parallel.checkpoint import consolidated_state_dict

DIM, FRAMES, CLASSES, BATCH = 32, 16, 5, 3


def build_head(experts_per_rate: int = 1, capacity_factor=None, mode: str = "default",
               burst_frames: int = 0) -> VidPrismHead:
    """``burst_frames`` > 0: the clips are multirate clips whose last that many frames are the burst part."""
    torch.manual_seed(0)
    cfg = HeadConfig(mode=mode, experts_per_rate=experts_per_rate, router_topk=1,
                     router_capacity_factor=capacity_factor)
    return VidPrismHead(DIM, CLASSES, cfg, max_frames=FRAMES, burst_frames=burst_frames)


def rank_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + rank)
    return torch.randn(BATCH, FRAMES, DIM, generator=g), torch.randint(0, CLASSES, (BATCH,), generator=g)


def head_loss(head, x_btd, labels):
    out = head(x_btd)
    return out, F.cross_entropy(out.logits, labels) + out.rank_loss + out.diversity_loss + out.router_aux_loss


def ep_forward_backward(ep_size: int, experts_per_rate: int = 1, capacity_factor=None, mode: str = "default",
                        burst_frames: int = 0):
    """EP forward and gradients vs the unsharded head on one process.

    Reference for expert e: the gradient of the summed losses of every rank in e's EP group (the
    owner receives all their streams); for the other parameters: of this rank's loss alone.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    ctx = init_expert_parallel(ep_size)
    head = build_head(experts_per_rate, capacity_factor, mode, burst_frames)
    reference = copy.deepcopy(head)
    placement = parallelize_model(head, ctx)

    x, y = rank_batch(rank)
    out, loss = head_loss(head, x, y)
    loss.backward()

    ref_out, ref_loss = head_loss(reference, x, y)
    ref_loss.backward()
    shared_ref_grads = {k: p.grad.clone() for k, p in reference.named_parameters()
                        if p.grad is not None and not k.startswith("experts.")}
    reference.zero_grad()
    group_start = rank - ctx.ep_rank
    group_loss = sum(head_loss(reference, *rank_batch(q))[1] for q in range(group_start, group_start + ep_size))
    group_loss.backward()

    report = {"logits_diff": (out.logits - ref_out.logits).abs().max().item(),
              "loss_diff": abs(loss.item() - ref_loss.item()),
              "local_experts": placement.local_experts(ctx.ep_rank), "grad_diffs": {}, "missing_grads": []}
    for name, p in head.named_parameters():
        if name.startswith("experts."):
            continue
        if name in shared_ref_grads and p.grad is None:
            report["missing_grads"].append(name)
        elif name in shared_ref_grads:
            report["grad_diffs"][name] = (p.grad - shared_ref_grads[name]).abs().max().item()
    for e, expert in head.experts.items():
        ref_expert = reference.experts[e]
        for pname, p in expert.named_parameters():
            ref_grad = ref_expert.get_parameter(pname).grad
            if p.grad is None and ref_grad is None:
                continue
            report["grad_diffs"][f"experts.{e}.{pname}"] = (p.grad - ref_grad).abs().max().item()
    return report


def _step_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10_000 * step + rank)
    return torch.randn(BATCH, FRAMES, DIM, generator=g) * 3, torch.randint(0, CLASSES, (BATCH,), generator=g)


def engine_training(ep_size: int, zero_stage: int, steps: int, save_dir: str = "", experts_per_rate: int = 1,
                    optimizer: str = "adamw"):
    """A few DeepSpeed steps (AdamW, gradient clipping) on the head; returns the world-mean loss per step
    and, on rank 0, the consolidated weights."""
    import deepspeed
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    from vidprism_ds.parallel.checkpoint import save_expert_files

    rank = dist.get_rank()
    ctx = init_expert_parallel(ep_size)
    head = build_head(experts_per_rate, capacity_factor=None)
    parallelize_model(head, ctx)
    groups = split_params_into_different_moe_groups_for_optimizer(
        [{"params": list(head.parameters()), "weight_decay": 0.05, "name": "all"}])
    # eps well above fp32 noise: some parameters have an exactly-zero true gradient (the key bias of
    # attention, LayerNorm before a softmax), and Adam would turn their 1e-9 rounding noise into
    # full-size steps that differ between any two summation orders.
    # Plain SGD makes the weights proportional to the gradients, so a mis-scaled expert gradient shows.
    optimizer = (torch.optim.AdamW(groups, lr=3e-3, eps=1e-4) if optimizer == "adamw"
                 else torch.optim.SGD(groups, lr=0.05))
    config = {"train_micro_batch_size_per_gpu": BATCH, "gradient_accumulation_steps": 1,
              "gradient_clipping": 0.5, "zero_allow_untested_optimizer": True,
              "zero_optimization": {"stage": zero_stage, "contiguous_gradients": True}}
    engine, *_ = deepspeed.initialize(model=head, optimizer=optimizer, config=config)
    losses = []
    for step in range(steps):
        x, y = _step_batch(rank, step)
        _, loss = head_loss(engine, x, y)
        engine.backward(loss)
        engine.step()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        losses.append(mean_loss.item() / dist.get_world_size())
    if save_dir:
        engine.save_checkpoint(save_dir, tag="step")
        save_expert_files(head, ctx, f"{save_dir}/step")
    state = consolidated_state_dict(head, ctx)
    return {"losses": losses, "state": state}


def load_at_other_ep(ep_size: int, ckpt_tag_dir: str):
    """Build a fresh head at ``ep_size`` and load a checkpoint written at another EP size."""
    from vidprism_ds.parallel.checkpoint import load_module_weights

    ctx = init_expert_parallel(ep_size)
    torch.manual_seed(123)  # different init, so an unloaded weight would show
    head = VidPrismHead(DIM, CLASSES, HeadConfig(), max_frames=FRAMES)
    parallelize_model(head, ctx)
    load_module_weights(head, ckpt_tag_dir)
    return consolidated_state_dict(head, ctx)


def dispatch_and_combine(ep_size: int) -> dict:
    """The dispatcher's two exchanges on their own: every rank sends expert e a (2, 1 + e, 3) input filled
    with 100 x rank + e; the owners double what they receive; ``combine`` must return each rank its own."""
    from vidprism_ds.parallel.expert_parallel_dispatch import ExpertParallelDispatcher
    from vidprism_ds.parallel.placement import place_experts

    rank = dist.get_rank()
    placement = place_experts([4.0, 1.0, 2.0, 3.0], ep_size)
    dispatcher = ExpertParallelDispatcher(placement, dist.group.WORLD, rank)
    inputs = [torch.full((2, 1 + e, 3), 100.0 * rank + e) for e in range(4)]
    dispatched = dispatcher.dispatch(inputs)
    batches = [dispatched.batch(slot) for slot in range(len(dispatched.experts))]
    received = {e: batch[:, 0, 0].tolist() for e, batch in zip(dispatched.experts, batches)}
    outputs = dispatcher.combine(dispatched, [2 * batch for batch in batches])
    return {"experts": dispatched.experts, "received": received,
            "returned_own": all(torch.equal(out, 2 * x) for out, x in zip(outputs, inputs))}
