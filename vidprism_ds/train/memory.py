"""Peak GPU memory per rank, estimated before training, and the check that refuses what cannot fit.

A run that does not fit dies with an out-of-memory error minutes into its first step (after the data
pipeline, the model and DeepSpeed have started), or worse, on the first long clip of a later epoch.
This module predicts the peak from the model itself and names the knob to turn instead.

The peak of a training step is at the start of the backward pass: every tensor autograd saved in the
forward pass is alive, next to the weights, the gradients accumulated so far and the optimizer state:

    peak = parameters + gradients + optimizer state + activations + workspace

* activations are *measured* on the actual model (``measure_activation_bytes_per_frame``): one clip
  goes forward under ``torch.autograd.graph.saved_tensors_hooks`` and the storages autograd keeps for
  backward are summed. With gradient checkpointing autograd keeps only each block's input, and the
  backward pass recomputes one block at a time: one block's activations are added. On top, the
  backward pass holds the activation gradients of the block it is in: half a block (see
  ``GRADIENT_BLOCKS_IN_FLIGHT``).
* parameters, gradients and optimizer state are counted per ZeRO stage (``estimate_peak_memory``),
  following DeepSpeed's ZeRO-1/2 optimizer (``deepspeed/runtime/zero/stage_1_and_2.py``).

Tensor parallelism (``parallel.tp_size`` = t, vidprism_ds/parallel/tensor_parallel.py) splits each ViT
block's q/k/v and fc1 (column-parallel: weight and bias) and out_proj and fc2 (row-parallel: weight; the
bias is replicated) over t consecutive ranks. Per rank:

* parameters, gradients, optimizer state: those split tensors count 1/t; everything else of the tower
  (patch embedding, LayerNorms, class token, ``proj``) and the VidPrism head are replicated over the TP
  group, the head's experts keep expert parallelism. ZeRO partitions over the data-parallel group
  (world / t ranks), the experts' share over the expert-data-parallel group (world / (t x ep_size)).
  A model already parallelised counts its local shards as they are (megatron-core's
  ``tensor_model_parallel`` attribute marks them).
* activations: no sequence parallelism is assumed (none is used). Inside a block, what lies between a
  column-parallel and a row-parallel layer (q/k/v, attention output and its softmax statistics, the fc1
  output and its GELU) is split over t; each block's input, the LayerNorm inputs and outputs (the
  inputs of the column-parallel layers) and their statistics are held whole by every TP rank:
  ``tokens x (3 x width in the training dtype + 4 fp32 LayerNorm statistics)`` of a measured block
  (``ActivationProfile.block_replicated_per_frame``; the block input is counted outside it), the rest of
  the measured block is divided by t. With gradient checkpointing only block inputs are saved, so TP
  divides the recomputed block and the gradients in flight, not the checkpoints. The head's activations
  are not divided.

``python -m vidprism_ds.train.memory --config configs/k400_vitb16.yaml --world-size 8`` prints the
estimate for a preset on a machine without a GPU; the trainer calls ``report_and_check`` at start-up. The
CLI never builds the full model: parameters are counted on the meta device, and activations are measured
on shallow towers (1 block, and 2 for the per-block slope) of the arch's block shape
(``build_shallow_frame_encoder``) and extrapolated to the full depth, which is exact because every block
has the same shape (a ViT-bigG/14 tower alone is 1.8 B parameters, 7.4 GB in fp32).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch
from deepspeed.moe.utils import is_moe_param
from torch import nn

from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.parallel.apply import find_expert_head, plan_placement
from vidprism_ds.parallel.expert_shard import LocalExpertShard
from vidprism_ds.parallel.tensor_parallel import vision_blocks
from vidprism_ds.train.optim import uses_cpu_offload

GIB = 1024 ** 3
MIB = 1024 ** 2
# CUDA context, cuBLAS/NCCL workspaces and the caching allocator's fragmentation: what a bf16 ViT run
# holds beyond its tensors. On an H200, 32 clips x 32 frames (ViT-B/16 with and without checkpointing,
# ViT-L/14 with) peaked at 2.3-3.0 GiB more reserved than allocated; the CUDA context adds ~0.5 GiB.
WORKSPACE_BYTES = 3 * GIB
# Activation gradients alive during one block's backward, in blocks' worth of activations. On an H200
# (bf16, 32 x 32 frames) the allocator's peak exceeded the saved activations (+ one recomputed block
# with checkpointing) by 0.3 of a block for ViT-B/16 and ViT-L/14 alike; rounded up to a bound.
GRADIENT_BLOCKS_IN_FLIGHT = 0.5
# Adam's two moments, fp32 (torch AdamW and DeepSpeedCPUAdam alike), and the fp32 master weights.
ADAM_MOMENT_BYTES = 8
MASTER_WEIGHT_BYTES = 4
# DeepSpeed's defaults for the keys the ds_configs may leave out (deepspeed/runtime/zero/config.py).
DS_DEFAULT_REDUCE_BUCKET = 500_000_000
# The backbone's saved activations are the same for every frame (frames are independent images; the
# transformer's batch is clips x frames), so a short clip measures them exactly and fast on a CPU.
BACKBONE_MEASURE_FRAMES = 2
# A block's LayerNorms (ln_1, ln_2) each save a fp32 mean and rstd per token, in fp32 under bf16 too.
LAYERNORM_STATISTICS_BYTES_PER_TOKEN = 2 * 2 * 4


# --------------------------------------------------------------------------------------------------
# The estimate
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per rank at the peak of a training step, and what they were computed for."""

    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    workspace_bytes: int
    # the configuration behind the figures; check_fits names knobs from these
    parameters_on_rank: int
    activation_bytes_per_frame: float
    micro_batch: int
    grad_accum: int
    num_frames: int
    grad_checkpointing: bool
    dtype_name: str
    zero_stage: int
    offload_optimizer: bool
    world_size: int
    ep_size: int
    # train.global_batch is set: the accumulation follows from the micro-batch, so a remedy names only that
    global_batch_fixed: bool = False
    tp_size: int = 1

    @property
    def data_parallel_size(self) -> int:
        """The ranks ZeRO partitions over: one per tensor-parallel group."""
        return max(1, self.world_size // self.tp_size)

    @property
    def total_bytes(self) -> int:
        return (self.parameter_bytes + self.gradient_bytes + self.optimizer_bytes + self.activation_bytes
                + self.workspace_bytes)

    def format(self) -> str:
        master = self.zero_stage >= 1 or self.dtype_name != "float32"
        optimizer_where = "on the CPU (ZeRO-Offload)" if self.offload_optimizer else (
            f"{'fp32 master + ' if master else ''}Adam moments, ZeRO-{self.zero_stage}")
        return "\n".join([
            f"estimated peak GPU memory per rank: {_gib(self.total_bytes)} GiB "
            f"(world size {self.world_size}, tp_size {self.tp_size}, data-parallel {self.data_parallel_size}, "
            f"ep_size {self.ep_size}, ZeRO-{self.zero_stage})",
            f"  parameters   {_gib(self.parameter_bytes):>7} GiB  "
            f"({self.parameters_on_rank / 1e6:.1f}M on this rank, {self.dtype_name})",
            f"  gradients    {_gib(self.gradient_bytes):>7} GiB",
            f"  optimizer    {_gib(self.optimizer_bytes):>7} GiB  ({optimizer_where})",
            f"  activations  {_gib(self.activation_bytes):>7} GiB  ({self.micro_batch} clips x {self.num_frames} "
            f"frames x {self.activation_bytes_per_frame / MIB:.1f} MiB/frame, gradient checkpointing "
            f"{'on' if self.grad_checkpointing else 'off'})",
            f"  workspace    {_gib(self.workspace_bytes):>7} GiB  (CUDA/NCCL workspaces, fragmentation, "
            f"ZeRO gradient buckets)",
        ])


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


# --------------------------------------------------------------------------------------------------
# Activations: measured
# --------------------------------------------------------------------------------------------------


class _SavedStorages:
    """The storages autograd keeps for backward, each counted once (views share one storage), with
    whether they follow the compute dtype.

    Parameters are left out (counted as parameters). A floating tensor without autograd history is a
    statistic computed for backward (LayerNorm's mean/rstd, attention's log-sum-exp): CUDA keeps those
    in fp32 under bf16, so they are not halved when a fp32 measurement is scaled to bf16.
    """

    def __init__(self, exclude: Sequence[torch.Tensor] = ()):
        self._excluded = {_storage_key(t) for t in exclude}
        self._storages: dict[tuple, tuple[int, torch.dtype, bool]] = {}
        # Keeps every counted storage alive while measuring, so that its address cannot be reused by a
        # later tensor and mistaken for it.
        self._alive: list[torch.UntypedStorage] = []

    def add(self, tensor: torch.Tensor, follows_dtype: Optional[bool] = None) -> None:
        key = _storage_key(tensor)
        if key in self._excluded or key in self._storages:
            return
        if follows_dtype is None:
            follows_dtype = tensor.is_floating_point() and (tensor.requires_grad or tensor.grad_fn is not None)
        storage = tensor.untyped_storage()
        self._storages[key] = (storage.nbytes(), tensor.dtype, follows_dtype)
        self._alive.append(storage)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.add(tensor)
        return tensor  # the tensor itself: measuring must not change what is kept

    def bytes_as(self, measured_dtype: torch.dtype, target_dtype: torch.dtype) -> int:
        """Total bytes had the model run in ``target_dtype``: storages in the compute dtype scale by the
        element size; integer/bool tensors and fp32 statistics keep their bytes."""
        scale = _element_size(target_dtype) / _element_size(measured_dtype)
        total = 0.0
        for nbytes, dtype, follows in self._storages.values():
            total += nbytes * scale if follows and dtype == measured_dtype else nbytes
        return int(total)


def _storage_key(tensor: torch.Tensor) -> tuple:
    return tensor.device, tensor.untyped_storage().data_ptr()


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class ActivationProfile:
    """Activation bytes per frame of a training step, in the training dtype, on one rank.

    The figures are measured on one process; ``tp_size`` > 1 divides what tensor parallelism splits
    (see the module docstring): the part of each block beyond ``block_replicated_per_frame``, in every
    block autograd keeps whole (``full_blocks``), in the recomputed block and in the gradients in flight.
    """

    saved_per_frame: float  # kept by autograd from forward to backward (the backbone's)
    block_per_frame: float  # one transformer block's activations, measured on its own (without its input)
    checkpointed: bool  # the backward pass recomputes the blocks, one at a time
    head_per_frame: float  # the temporal head's, measured at the real clip length, per frame
    # of block_per_frame, what every TP rank holds whole without sequence parallelism
    block_replicated_per_frame: float = 0.0
    full_blocks: int = 0  # blocks whose activations saved_per_frame holds whole (recorded, not checkpointed)
    tp_size: int = 1

    @property
    def block_per_rank(self) -> float:
        if self.tp_size == 1:
            return self.block_per_frame
        sharded = self.block_per_frame - self.block_replicated_per_frame
        return self.block_replicated_per_frame + sharded / self.tp_size

    @property
    def saved_per_rank(self) -> float:
        return self.saved_per_frame - self.full_blocks * (self.block_per_frame - self.block_per_rank)

    @property
    def working_per_frame(self) -> float:
        """What the backward pass holds beyond the saved activations: the recomputed block, and the
        activation gradients of the block it is in."""
        recomputed = self.block_per_rank if self.checkpointed else 0.0
        return recomputed + GRADIENT_BLOCKS_IN_FLIGHT * self.block_per_rank

    @property
    def per_frame(self) -> float:
        return self.saved_per_rank + self.working_per_frame + self.head_per_frame


def _transformer_blocks(backbone: nn.Module) -> list[tuple[nn.Module, bool]]:
    """(block, checkpointed) for every block of the backbone's open_clip transformers; open_clip's
    ``set_grad_checkpointing`` sets ``grad_checkpointing`` on the module holding ``resblocks``."""
    blocks = []
    for module in backbone.modules():
        resblocks = getattr(module, "resblocks", None)
        if isinstance(resblocks, nn.ModuleList):
            checkpointed = bool(getattr(module, "grad_checkpointing", False))
            blocks.extend((block, checkpointed) for block in resblocks)
    return blocks


@contextlib.contextmanager
def _side_effect_free_training_mode(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Train mode (dropout, samplers' noise as in training) without touching the caller's state: the
    modules' train/eval flags and the RNG streams are restored afterwards."""
    modes = {module: module.training for module in model.modules()}
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        model.train()
        try:
            yield
        finally:
            for module, mode in modes.items():
                module.training = mode


@dataclass
class _BackboneMeasurement:
    saved: _SavedStorages  # one clip through the backbone
    block: Optional[_SavedStorages]  # the last block run again on its own (None: autograd records none)
    full_blocks: int  # blocks autograd recorded without checkpointing: their activations are all saved
    block_input_shape: tuple[int, ...] = ()


def _measure_backbone(backbone: nn.Module, image_size: int, frames: int, device: torch.device,
                      param_dtype: torch.dtype) -> _BackboneMeasurement:
    """Saved storages of one clip through the backbone, and of one block run again on its own."""
    params = list(backbone.parameters()) + list(backbone.buffers())
    saved = _SavedStorages(exclude=params)
    last_call: dict = {}
    handles = []
    full_blocks: list[nn.Module] = []

    def keep_checkpoint_input(block, args, kwargs):
        # The checkpoint keeps each block's input for the recompute. torch's non-reentrant checkpoint
        # (open_clip's) saves it through autograd, where the hooks see it, but a checkpoint that holds it
        # in its recompute closure would hide it from them: count it here too (a storage counts once).
        if _needs_backward(block, args, kwargs):
            saved.add(_block_input(args, kwargs), follows_dtype=True)

    def remember_call(block, args, kwargs):
        last_call.update(block=block, args=args, kwargs=kwargs, grad=_needs_backward(block, args, kwargs))

    def count_full_block(block, args, kwargs):
        if _needs_backward(block, args, kwargs):
            full_blocks.append(block)

    blocks = _transformer_blocks(backbone)
    try:
        for block, checkpointed in blocks:
            hook = keep_checkpoint_input if checkpointed else count_full_block
            handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
        if blocks:
            handles.append(blocks[-1][0].register_forward_pre_hook(remember_call, with_kwargs=True))
        clip = torch.randn(1, frames, 3, image_size, image_size, device=device, dtype=param_dtype)
        saved.add(clip, follows_dtype=True)  # the batch itself: bf16 in training like the activations
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
            backbone(clip)
    finally:
        for handle in handles:
            handle.remove()
    input_shape = tuple(_block_input(last_call["args"], last_call["kwargs"]).shape) if last_call else ()
    return _BackboneMeasurement(saved, _measure_one_block(last_call, params), len(full_blocks), input_shape)


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["q_x"]  # open_clip's blocks: forward(q_x, k_x, v_x, attn_mask)


def _needs_backward(block: nn.Module, args: tuple, kwargs: dict) -> bool:
    """Whether autograd records this block (a frozen block on a frozen input runs as at inference)."""
    return _block_input(args, kwargs).requires_grad or any(p.requires_grad for p in block.parameters())


def _measure_one_block(call: dict, params: list[torch.Tensor]) -> Optional[_SavedStorages]:
    """The last block run again on the input it saw, without checkpointing: what the backward pass
    holds while it recomputes one block. Its input is already counted."""
    if not call or not call["grad"]:
        return None  # a frozen tower runs without autograd: nothing is kept, nothing recomputed
    args, kwargs = list(call["args"]), dict(call["kwargs"])
    original = _block_input(call["args"], kwargs)
    replay = original.detach().requires_grad_(original.requires_grad)
    if args:
        args[0] = replay
    else:
        kwargs["q_x"] = replay
    block_saved = _SavedStorages(exclude=params + [replay])
    with torch.autograd.graph.saved_tensors_hooks(block_saved.pack, _unpack):
        call["block"](*args, **kwargs)
    return block_saved


def _measure_head(head: nn.Module, dim: int, frames: int, device: torch.device, param_dtype: torch.dtype,
                  input_requires_grad: bool) -> _SavedStorages:
    """The head on one clip of frame embeddings, at the real clip length (its streams depend on it)."""
    saved = _SavedStorages(exclude=list(head.parameters()) + list(head.buffers()))
    x_btd = torch.randn(1, frames, dim, device=device, dtype=param_dtype, requires_grad=input_requires_grad)
    saved.add(x_btd, follows_dtype=True)  # the backbone's output, saved by the head's first op
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
        head(x_btd)
    return saved


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _replicated_block_bytes_per_frame(input_shape: tuple[int, ...], frames: int, dtype: torch.dtype) -> float:
    """Of one measured block (its input excluded), what every TP rank holds whole without sequence
    parallelism: ln_1's output, ln_2's input and output (tokens x width each, in the training dtype: the
    residual stream and the column-parallel layers' inputs) and both LayerNorms' fp32 statistics."""
    if not input_shape:
        return 0.0
    elements = math.prod(input_shape) / frames
    tokens = elements / input_shape[-1]
    return 3 * elements * _element_size(dtype) + tokens * LAYERNORM_STATISTICS_BYTES_PER_TOKEN


def measure_activations(model: nn.Module, image_size: int, num_frames: int, device: torch.device | str,
                        dtype: torch.dtype, backbone_frames: int = BACKBONE_MEASURE_FRAMES,
                        tp_size: int = 1) -> ActivationProfile:
    """Activation bytes per frame of ``model`` (a ``VideoClassifier``) training on ``num_frames``-frame
    clips in ``dtype``, measured on ``device`` where the model lives.

    The forward runs in the parameters' dtype; when ``dtype`` differs (a fp32 model measured for bf16
    training, as before ``deepspeed.initialize`` casts it) the result is scaled: storages in the compute
    dtype by the ratio of element sizes, fp32 statistics and integer tensors unchanged. Nothing is
    differentiated (the saved tensors exist once forward has run), so the gradients are untouched; the
    RNG streams and train/eval flags are restored. The backbone is measured on ``backbone_frames``
    frames (its per-frame figure does not depend on the count), the head at ``num_frames``.

    ``tp_size``: the tensor-parallel size to divide by, for a model measured before it is parallelised
    (1 for one already parallelised: its blocks hold their shards). Collective when experts are sharded
    (the head's dispatcher exchanges streams) or the tower is tensor-parallel: call it on every rank.
    """
    device = torch.device(device)
    param_dtype = next(model.parameters()).dtype
    backbone, head = model.backbone, model.head
    backbone_frames = max(1, min(backbone_frames, num_frames))
    with _side_effect_free_training_mode(model, device):
        measured = _measure_backbone(backbone, image_size, backbone_frames, device, param_dtype)
        backbone_trains = any(p.requires_grad for p in backbone.parameters())
        head_saved = _measure_head(head, backbone.embed_dim, num_frames, device, param_dtype, backbone_trains)
    block = measured.block
    block_bytes = block.bytes_as(param_dtype, dtype) if block is not None else 0
    replicated = (_replicated_block_bytes_per_frame(measured.block_input_shape, backbone_frames, dtype)
                  if block is not None else 0.0)
    return ActivationProfile(saved_per_frame=measured.saved.bytes_as(param_dtype, dtype) / backbone_frames,
                             block_per_frame=block_bytes / backbone_frames,
                             checkpointed=any(checkpointed for _, checkpointed in _transformer_blocks(backbone)),
                             head_per_frame=head_saved.bytes_as(param_dtype, dtype) / num_frames,
                             block_replicated_per_frame=replicated, full_blocks=measured.full_blocks,
                             tp_size=tp_size)


def measure_activation_bytes_per_frame(model: nn.Module, image_size: int, num_frames: int,
                                       device: torch.device | str, dtype: torch.dtype,
                                       backbone_frames: int = BACKBONE_MEASURE_FRAMES, tp_size: int = 1) -> float:
    """Bytes of activations per frame and rank at the peak of a training step (see ``measure_activations``)."""
    return measure_activations(model, image_size, num_frames, device, dtype, backbone_frames, tp_size).per_frame


# --------------------------------------------------------------------------------------------------
# Parameters, gradients, optimizer state: counted
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RankParameters:
    """Parameter elements on the busiest rank: dense ones (replicated over data parallelism) and the
    rank's experts (replicated over the expert-data-parallel group only)."""

    dense: int
    dense_trainable: int
    expert: int
    expert_trainable: int
    buffer_elements: int


def _expert_parameters_on_rank(model: nn.Module, ep_size: int) -> list[nn.Parameter]:
    """The expert parameters of the rank holding the most. A model that ``parallelize_model`` has
    sharded holds only its own (tagged for DeepSpeed: ``is_moe_param``); on an unsharded model the
    placement is planned here, as ``parallelize_model`` would."""
    tagged = [p for p in model.parameters() if is_moe_param(p)]
    head = find_expert_head(model)
    if tagged or head is None or isinstance(head.experts, LocalExpertShard):
        return tagged
    placement = plan_placement(head, ep_size)
    per_rank = [[p for e in placement.local_experts(rank) for p in head.experts[str(e)].parameters()]
                for rank in range(ep_size)]
    return max(per_rank, key=lambda params: sum(p.numel() for p in params))


def _all_expert_parameter_ids(model: nn.Module) -> set[int]:
    head = find_expert_head(model)
    ids = {id(p) for p in model.parameters() if is_moe_param(p)}
    if head is not None:
        ids |= {id(p) for p in head.experts.parameters()}
    return ids


def _is_tensor_parallel(model: nn.Module) -> bool:
    """Whether ``model`` is already parallelised: megatron-core's attribute marks the local shards."""
    return any(getattr(p, "tensor_model_parallel", False) for p in model.parameters())


def _tensor_parallel_split_ids(model: nn.Module) -> set[int]:
    """The parameters tensor parallelism splits in a model not yet parallelised: in every vision block
    (the ones ``apply_tensor_parallel`` changes) q/k/v and fc1 (weight and bias, column-parallel) and the
    weights of out_proj and fc2 (row-parallel; their biases stay whole)."""
    split = []
    for _, block in vision_blocks(model):
        split += [block.attn.in_proj_weight, block.attn.in_proj_bias, block.attn.out_proj.weight,
                  block.mlp.c_fc.weight, block.mlp.c_fc.bias, block.mlp.c_proj.weight]
    return {id(p) for p in split if p is not None}


def _count_rank_parameters(model: nn.Module, ep_size: int, tp_size: int = 1) -> _RankParameters:
    experts = _expert_parameters_on_rank(model, ep_size)
    expert_ids = _all_expert_parameter_ids(model)
    dense = [p for p in model.parameters() if id(p) not in expert_ids]
    split = set() if tp_size == 1 or _is_tensor_parallel(model) else _tensor_parallel_split_ids(model)

    def on_rank(p: torch.Tensor) -> int:
        return math.ceil(p.numel() / tp_size) if id(p) in split else p.numel()

    return _RankParameters(
        dense=sum(on_rank(p) for p in dense),
        dense_trainable=sum(on_rank(p) for p in dense if p.requires_grad),
        expert=sum(p.numel() for p in experts),
        expert_trainable=sum(p.numel() for p in experts if p.requires_grad),
        buffer_elements=sum(b.numel() for b in model.buffers()))


def _zero_settings(ds_config: dict) -> tuple[int, bool]:
    """(ZeRO stage, optimizer offloaded to the CPU): the offload test is the optimizer builder's own."""
    zero = ds_config.get("zero_optimization") or {}
    return int(zero.get("stage", 0)), uses_cpu_offload(ds_config)


def _training_dtype(ds_config: dict) -> torch.dtype:
    return torch.bfloat16 if (ds_config.get("bf16") or {}).get("enabled") is True else torch.float32


def _gradient_dtype(ds_config: dict, dtype: torch.dtype) -> torch.dtype:
    """DeepSpeed accumulates gradients in the model's dtype unless data_types.grad_accum_dtype says fp32."""
    accum = (ds_config.get("data_types") or {}).get("grad_accum_dtype")
    return torch.float32 if accum in ("fp32", "float32", "float") else dtype


def _workspace_bytes(ds_config: dict, stage: int, grad_bytes: int) -> int:
    """The fixed allowance plus ZeRO's gradient reduction buckets (reduce_bucket_size elements, two of
    them with overlap_comm), which are alive during backward. The all-gather bucket is used in the
    optimizer step, after the activations are freed, and is not added."""
    if stage < 1:
        return WORKSPACE_BYTES
    zero = ds_config.get("zero_optimization") or {}
    buckets = 2 if zero.get("overlap_comm", False) else 1
    return WORKSPACE_BYTES + int(zero.get("reduce_bucket_size", DS_DEFAULT_REDUCE_BUCKET)) * grad_bytes * buckets


def estimate_peak_memory(model: nn.Module, cfg: ExperimentConfig, ds_config: dict, dp_size: int, ep_size: int,
                         activation_bytes_per_frame: float) -> MemoryEstimate:
    """Peak bytes per rank for training ``model`` with ``cfg`` under the resolved DeepSpeed config, on
    ``dp_size`` data-parallel ranks (world size / ``parallel.tp_size``: ZeRO partitions over them; without
    tensor parallelism the world size).

    * parameters: every parameter on the rank (frozen ones too) in the training dtype (bf16 when
      DeepSpeed's bf16 is enabled); only the rank's experts (E / ep_size of them); of the tower's
      tensor-parallel weights the rank's 1/tp_size (the model may be parallelised already or not).
    * gradients: trainable parameters only, in the gradient dtype. ZeRO-0/1 keep them whole; ZeRO-2
      partitions them over the data-parallel ranks (dp_size), expert ones over the expert-data-parallel
      group (dp_size / ep_size).
    * optimizer state: trainable parameters only: Adam's two fp32 moments, plus a fp32 master copy
      (DeepSpeed's ZeRO-1/2 optimizer always updates a fp32 clone of its partition; at ZeRO-0 only bf16
      training has one). ZeRO-1/2 partition it like ZeRO-2's gradients; ZeRO-Offload keeps it on the
      CPU. The step's transient fp32 gradient partition comes after the activations are freed and is
      not added.
    * activations: ``activation_bytes_per_frame`` (per rank: ``measure_activations`` divides by
      tp_size) x micro_batch x num_frames.
    """
    stage, offload = _zero_settings(ds_config)
    dtype = _training_dtype(ds_config)
    param_bytes, grad_bytes = _element_size(dtype), _element_size(_gradient_dtype(ds_config, dtype))
    tp_size = cfg.parallel.tp_size
    counts = _count_rank_parameters(model, ep_size, tp_size)
    dp, expert_dp = dp_size, max(1, dp_size // ep_size)

    def partitioned(elements: int, group: int, partition: bool) -> int:
        return math.ceil(elements / group) if partition else elements

    gradients = grad_bytes * (partitioned(counts.dense_trainable, dp, stage >= 2)
                              + partitioned(counts.expert_trainable, expert_dp, stage >= 2))
    state_bytes = ADAM_MOMENT_BYTES + (MASTER_WEIGHT_BYTES if stage >= 1 or dtype != torch.float32 else 0)
    optimizer = 0 if offload else state_bytes * (partitioned(counts.dense_trainable, dp, stage >= 1)
                                                 + partitioned(counts.expert_trainable, expert_dp, stage >= 1))
    micro_batch, num_frames = cfg.train.micro_batch, cfg.data.num_frames
    return MemoryEstimate(
        parameter_bytes=param_bytes * (counts.dense + counts.expert + counts.buffer_elements),
        gradient_bytes=gradients,
        optimizer_bytes=optimizer,
        activation_bytes=int(activation_bytes_per_frame * micro_batch * num_frames),
        workspace_bytes=_workspace_bytes(ds_config, stage, grad_bytes),
        parameters_on_rank=counts.dense + counts.expert,
        activation_bytes_per_frame=activation_bytes_per_frame,
        # the resolved JSON holds the accumulation derived for this world size (train.global_batch)
        micro_batch=micro_batch, grad_accum=int(ds_config.get("gradient_accumulation_steps", cfg.train.grad_accum)),
        num_frames=num_frames, global_batch_fixed=cfg.train.global_batch > 0,
        grad_checkpointing=any(checkpointed for _, checkpointed in _transformer_blocks(model)),
        dtype_name=str(dtype).removeprefix("torch."), zero_stage=stage, offload_optimizer=offload,
        world_size=dp_size * tp_size, ep_size=ep_size, tp_size=tp_size)


# --------------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------------


def _fitting_micro_batch(estimate: MemoryEstimate, limit: float) -> int:
    """The largest micro-batch that divides micro_batch x grad_accum (so the global batch is kept) and
    whose activations fit beside everything else; 0 if not even one clip fits."""
    room = limit - (estimate.total_bytes - estimate.activation_bytes)
    per_clip = estimate.activation_bytes_per_frame * estimate.num_frames
    most = int(room // per_clip) if room > 0 and per_clip > 0 else 0
    clips_per_rank = estimate.micro_batch * estimate.grad_accum
    return max((m for m in range(1, min(most, estimate.micro_batch - 1) + 1) if clips_per_rank % m == 0), default=0)


def _remedies(estimate: MemoryEstimate, limit: float) -> list[str]:
    remedies = []
    if not estimate.grad_checkpointing and estimate.activation_bytes > 0:
        remedies.append("set model.backbone.grad_checkpointing=true (recomputes each block in backward, "
                        "keeps only its input)")
    micro = _fitting_micro_batch(estimate, limit)
    if micro and estimate.global_batch_fixed:
        remedies.append(f"lower train.micro_batch (train.micro_batch={micro}; train.grad_accum follows from "
                        f"train.global_batch)")
    elif micro:
        accum = estimate.micro_batch * estimate.grad_accum // micro
        remedies.append(f"lower train.micro_batch and raise train.grad_accum to keep the global batch "
                        f"(train.micro_batch={micro} train.grad_accum={accum})")
    elif estimate.micro_batch > 1:
        remedies.append("lower train.micro_batch and raise train.grad_accum to keep the global batch")
    # The optimizer-side knobs only where they could close the gap on their own: suggesting offload for
    # 1 GiB of optimizer state when activations are 20 GiB over would send the user the wrong way.
    over = estimate.total_bytes - limit
    unpartitioned = estimate.gradient_bytes if estimate.zero_stage < 2 else 0
    if estimate.zero_stage == 0:
        unpartitioned += estimate.optimizer_bytes
    if estimate.data_parallel_size > 1 and unpartitioned * (1 - 1 / estimate.data_parallel_size) >= over:
        remedies.append(f"partition gradients and optimizer state with ZeRO-2 (--deepspeed_config "
                        f"ds_configs/zero2.json; now ZeRO-{estimate.zero_stage})")
    if not estimate.offload_optimizer and estimate.optimizer_bytes >= over:
        remedies.append(f"move the optimizer state ({_gib(estimate.optimizer_bytes)} GiB) to the CPU with "
                        f"--deepspeed_config ds_configs/zero2_offload.json")
    if not remedies:  # one clip, checkpointed, does not fit: only the clip itself can shrink
        remedies.append("shorten the clips (data.num_frames) or the frames (model.backbone.image_size), or use "
                        "a GPU with more memory")
    return remedies


def check_fits(estimate: MemoryEstimate, device_total_bytes: int, fraction: float) -> None:
    """Raise ``ConfigError`` (one line: estimate vs limit, then what to change) when the estimate
    exceeds ``fraction`` of the device's memory. ``fraction`` 0 switches the check off."""
    if fraction <= 0:
        return
    limit = fraction * device_total_bytes
    if estimate.total_bytes <= limit:
        return
    raise ConfigError(
        f"estimated peak GPU memory {_gib(estimate.total_bytes)} GiB per rank exceeds train.memory_limit_fraction="
        f"{fraction:g} of {_gib(device_total_bytes)} GiB ({_gib(limit)} GiB): activations "
        f"{_gib(estimate.activation_bytes)} GiB ({estimate.micro_batch} clips x {estimate.num_frames} frames), "
        f"optimizer state {_gib(estimate.optimizer_bytes)} GiB; " + "; or ".join(_remedies(estimate, limit)))


def report_and_check(model: nn.Module, cfg: ExperimentConfig, ds_config: dict, dp_size: int, ep_size: int,
                     device: torch.device | str, dtype: torch.dtype,
                     log: Optional[Callable[[str], None]] = None) -> MemoryEstimate:
    """Measure the activations on ``device``, estimate the peak per rank (``dp_size``: the data-parallel
    size, world size / ``parallel.tp_size``), pass the summary to ``log``; on a GPU raise ``ConfigError``
    if it exceeds ``train.memory_limit_fraction`` of the device (on the CPU there is nothing to compare
    with). Collective when experts are sharded or the tower is tensor-parallel; call it on every rank."""
    device = torch.device(device)
    # a tower parallelised already is measured with its shards: nothing left to divide
    tp_divisor = 1 if _is_tensor_parallel(model) else cfg.parallel.tp_size
    per_frame = measure_activation_bytes_per_frame(model, cfg.model.backbone.image_size, cfg.data.num_frames,
                                                   device, dtype, tp_size=tp_divisor)
    estimate = estimate_peak_memory(model, cfg, ds_config, dp_size, ep_size, per_frame)
    if log is not None:
        log(estimate.format())
    if device.type == "cuda":
        check_fits(estimate, torch.cuda.get_device_properties(device).total_memory, cfg.train.memory_limit_fraction)
    return estimate


# --------------------------------------------------------------------------------------------------
# CLI: the estimate for a config on a machine without a GPU
# --------------------------------------------------------------------------------------------------


EXIT_DOES_NOT_FIT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vidprism_ds.train.memory",
                                description="Estimate the peak GPU memory per rank of a training config "
                                            "(parameters counted on the meta device, activations measured on "
                                            "shallow towers on the CPU; no weights needed).")
    p.add_argument("--config", help="experiment YAML (configs/*.yaml); default: the embedded demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. parallel.tp_size=4")
    p.add_argument("--deepspeed_config", default="ds_configs/zero2.json", help="DeepSpeed JSON (train.py's default)")
    p.add_argument("--world-size", type=int, nargs="+", default=[1], metavar="N",
                   help="GPUs in the run, one estimate for each (ZeRO partitions over N / parallel.tp_size)")
    p.add_argument("--device-gib", type=float, default=80.0, help="memory of one GPU in GiB")
    p.add_argument("--markdown", action="store_true",
                   help="one Markdown table row per world size (the table of docs/benchmarks.md)")
    p.add_argument("--fit-global-batch", action="store_true",
                   help="where train.global_batch leaves fewer clips per data-parallel rank than train.micro_batch, "
                        "lower the micro-batch to the largest divisor of those clips (as the config error suggests)")
    return p


def micro_batch_for_world(cfg: ExperimentConfig, world_size: int) -> ExperimentConfig:
    """``cfg`` with train.micro_batch lowered to the largest divisor of the clips each data-parallel rank
    trains a step (global batch / (world size / tp_size)) when the configured one does not divide them; as
    it is otherwise (and when the world size does not divide the global batch: the estimate then says why)."""
    from vidprism_ds.train.batch import largest_divisor_up_to

    dp_size = world_size // cfg.parallel.tp_size
    global_batch, micro = cfg.train.global_batch, cfg.train.micro_batch
    if not global_batch or not dp_size or global_batch % dp_size or global_batch % (micro * dp_size) == 0:
        return cfg
    fitting = largest_divisor_up_to(global_batch // dp_size, micro)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch=fitting, grad_accum=1))


MARKDOWN_HEADER = ("| preset | GPUs | TP | DP | ZeRO | checkpointing | micro-batch x accum | parameters | gradients "
                   "| optimizer | activations | workspace | total GiB | fits |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def load_estimate_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config train.py would run, with random init: the weights file has the same shapes."""
    from vidprism_ds.train.cli import load_run_config

    cfg = load_run_config(argparse.Namespace(config=args.config, overrides=args.overrides, eval_only=False,
                                             export=None))
    backbone = dataclasses.replace(cfg.model.backbone, pretrained_path=None)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone),
                               train=dataclasses.replace(cfg.train, init_from=""))


def _num_classes(cfg: ExperimentConfig) -> int:
    from vidprism_ds.data.presets import load_class_names

    return cfg.model.num_classes or len(load_class_names(cfg.data.dataset, cfg.data.labels))


def _tower_blocks(backbone_cfg, depth: int) -> tuple[int, int]:
    """(blocks autograd records, frozen blocks) of a ``depth``-block tower: frozen ones run as at inference
    but may still keep a little (a checkpointed block's input), so they are measured too."""
    if backbone_cfg.freeze == "all":
        return 0, depth
    recorded = min(backbone_cfg.trainable_blocks, depth) if backbone_cfg.freeze == "partial" else depth
    return recorded, depth - recorded


def _measure_shallow(cfg: ExperimentConfig, head: nn.Module, recorded: int, frozen: int,
                     dtype: torch.dtype) -> ActivationProfile:
    """The profile of a tower of ``frozen`` frozen blocks followed by ``recorded`` trained ones."""
    from vidprism_ds.model.backbone import build_shallow_frame_encoder
    from vidprism_ds.model.video_model import VideoClassifier

    backbone_cfg = cfg.model.backbone
    if backbone_cfg.freeze == "partial":
        backbone_cfg = dataclasses.replace(backbone_cfg, trainable_blocks=recorded)
    tower = build_shallow_frame_encoder(backbone_cfg, recorded + frozen, seed=cfg.train.seed)
    return measure_activations(VideoClassifier(tower, head), backbone_cfg.image_size, cfg.data.num_frames, "cpu",
                               dtype)


def measure_shallow_activations(cfg: ExperimentConfig, dtype: torch.dtype) -> ActivationProfile:
    """The activation profile of ``cfg``'s model without building its tower: measured on towers of one
    block (with the real head), and of one more recorded or frozen block, the saved bytes extrapolated to
    the full depth. Exact: the blocks are identical, so each recorded (or frozen) block adds the same
    bytes. Per process (tp_size 1)."""
    from vidprism_ds.model.backbone import clip_model_config
    from vidprism_ds.train.experiment_model import build_experiment_head

    backbone_cfg = cfg.model.backbone
    model_cfg = clip_model_config(backbone_cfg.arch, backbone_cfg.image_size)
    full_recorded, full_frozen = _tower_blocks(backbone_cfg, model_cfg["vision_cfg"]["layers"])
    base_recorded = min(full_recorded, 1)
    base_frozen = 1 - base_recorded
    head = build_experiment_head(cfg, int(model_cfg["embed_dim"]), _num_classes(cfg))
    base = _measure_shallow(cfg, head, base_recorded, base_frozen, dtype)
    saved = base.saved_per_frame
    for more_recorded, more_frozen, count in ((1, 0, full_recorded - base_recorded), (0, 1, full_frozen - base_frozen)):
        if count > 0:
            deeper = _measure_shallow(cfg, head, base_recorded + more_recorded, base_frozen + more_frozen, dtype)
            saved += count * (deeper.saved_per_frame - base.saved_per_frame)
    return dataclasses.replace(base, saved_per_frame=saved, full_blocks=0 if base.checkpointed else full_recorded)


def estimate_for_config(cfg: ExperimentConfig, ds_config: dict, world_size: int,
                        activations: Optional[ActivationProfile] = None) -> MemoryEstimate:
    """The estimate for ``cfg`` on ``world_size`` GPUs: parameters counted on a model built on the meta
    device (no memory, any size), activations from ``activations`` or ``measure_shallow_activations``
    (they do not depend on the world size: pass one profile for several), divided by parallel.tp_size."""
    from vidprism_ds.parallel.context import validate_tp_size
    from vidprism_ds.parallel.tensor_parallel import check_tp_divides
    from vidprism_ds.train.ds_config import resolve_ds_config
    from vidprism_ds.train.experiment_model import build_experiment_model

    tp_size, ep_size = cfg.parallel.tp_size, cfg.parallel.ep_size
    validate_tp_size(tp_size, ep_size, world_size)
    dp_size = world_size // tp_size
    resolved = resolve_ds_config(ds_config, cfg, dp_size, True, cfg.model.variant != "meanpool")
    with torch.device("meta"):
        model = build_experiment_model(cfg, _num_classes(cfg)).model
    check_tp_divides(vision_blocks(model), tp_size)
    profile = activations or measure_shallow_activations(cfg, _training_dtype(resolved))
    per_frame = dataclasses.replace(profile, tp_size=tp_size).per_frame
    return estimate_peak_memory(model, cfg, resolved, dp_size, ep_size, per_frame)


def markdown_row(name: str, estimate: MemoryEstimate, fits: bool) -> str:
    """One row of MARKDOWN_HEADER's table: GiB per rank."""
    parts = (estimate.parameter_bytes, estimate.gradient_bytes, estimate.optimizer_bytes, estimate.activation_bytes,
             estimate.workspace_bytes, estimate.total_bytes)
    return (f"| {name} | {estimate.world_size} | {estimate.tp_size} | {estimate.data_parallel_size} | "
            f"{estimate.zero_stage} | {'on' if estimate.grad_checkpointing else 'off'} | "
            f"{estimate.micro_batch} x {estimate.grad_accum} | "
            + " | ".join(_gib(part) for part in parts) + f" | {'yes' if fits else 'no'} |")


def _does_not_fit(estimate: MemoryEstimate, device_gib: float, fraction: float) -> Optional[str]:
    """check_fits' message, or None when the estimate fits."""
    try:
        check_fits(estimate, int(device_gib * GIB), fraction)
    except ConfigError as err:
        return str(err)
    return None


def _print_estimate(estimate: MemoryEstimate, problem: Optional[str], device_gib: float, fraction: float) -> None:
    print(estimate.format())
    if problem is not None:
        print(f"config error: {problem}", file=sys.stderr)
    else:
        print(f"fits: {_gib(estimate.total_bytes)} GiB <= {fraction:g} x {device_gib:g} GiB" if fraction > 0
              else "not checked: train.memory_limit_fraction=0")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from vidprism_ds.train.ds_config import read_ds_config, uses_bf16

    all_fit = True
    try:
        cfg = load_estimate_config(args)
        ds_config = read_ds_config(args.deepspeed_config)
        # the GPU's training dtype, as resolve_ds_config decides it; the profile serves every world size
        profile = measure_shallow_activations(
            cfg, torch.bfloat16 if uses_bf16(cfg.train.precision, on_gpu=True) else torch.float32)
        if args.markdown:
            print(MARKDOWN_HEADER)
        for world_size in args.world_size:
            run_cfg = micro_batch_for_world(cfg, world_size) if args.fit_global_batch else cfg
            estimate = estimate_for_config(run_cfg, ds_config, world_size, profile)
            problem = _does_not_fit(estimate, args.device_gib, run_cfg.train.memory_limit_fraction)
            all_fit = all_fit and problem is None
            if args.markdown:
                print(markdown_row(Path(args.config).stem if args.config else "demo", estimate, problem is None))
            else:
                _print_estimate(estimate, problem, args.device_gib, cfg.train.memory_limit_fraction)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    return 0 if all_fit else EXIT_DOES_NOT_FIT


if __name__ == "__main__":
    sys.exit(main())
