"""Activations: the bytes autograd keeps from the forward pass for backward, measured on the model.

``measure_activations`` sends one clip forward under ``torch.autograd.graph.saved_tensors_hooks`` and
sums the storages autograd keeps for backward. With gradient checkpointing autograd keeps only each
block's input, and the backward pass recomputes one block at a time: one block's activations are added.
On top, the backward pass holds the activation gradients of the block it is in: half a block (see
``GRADIENT_BLOCKS_IN_FLIGHT``).

Tensor parallelism (``parallel.tp_size`` = t): no sequence parallelism is assumed (none is used). Inside a
block, what lies between a column-parallel and a row-parallel layer (q/k/v, attention output and its
softmax statistics, the fc1 output and its GELU) is split over t; each block's input, the LayerNorm
inputs and outputs (the inputs of the column-parallel layers) and their statistics are held whole by
every TP rank: ``tokens x (3 x width in the training dtype + 4 fp32 LayerNorm statistics)`` of a measured
block (``ActivationProfile.block_replicated_per_frame``; the block input is counted outside it), the rest
of the measured block is divided by t. With gradient checkpointing only block inputs are saved, so TP
divides the recomputed block and the gradients in flight, not the checkpoints. The head's activations
are not divided.

``measure_shallow_activations`` gives the same profile for a config without building its tower: it
measures shallow towers (1 block, and 2 for the per-block slope) of the arch's block shape
(``build_shallow_frame_encoder``) and extrapolates to the full depth, which is exact because every block
has the same shape (the giant towers are gigabytes of weights: docs/benchmarks.md gives their sizes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.model.backbone import transformer_blocks

# Activation gradients alive during one block's backward, in blocks' worth of activations: a bound,
# calibrated on H200 runs (docs/benchmarks.md, GPU).
GRADIENT_BLOCKS_IN_FLIGHT = 0.5
# The backbone's saved activations are the same for every frame (frames are independent images; the
# transformer's batch is clips x frames), so a short clip measures them exactly and fast on a CPU.
BACKBONE_MEASURE_FRAMES = 2
# A block's LayerNorms (ln_1, ln_2) each save a fp32 mean and rstd per token, in fp32 under bf16 too.
LAYERNORM_STATISTICS_BYTES_PER_TOKEN = 2 * 2 * 4


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
    # what the head keeps once a step whatever the micro-batch: the copies of its expert weights that its
    # batched computations stack and save for backward (not per frame: never scaled by clips)
    head_per_step: float = 0.0
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

    blocks = transformer_blocks(backbone)
    try:
        for block in blocks:
            hook = keep_checkpoint_input if block.checkpointed else count_full_block
            handles.append(block.module.register_forward_pre_hook(hook, with_kwargs=True))
        if blocks:
            handles.append(blocks[-1].module.register_forward_pre_hook(remember_call, with_kwargs=True))
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
                  input_requires_grad: bool, clips: int = 1) -> _SavedStorages:
    """The head on ``clips`` clips of frame embeddings, at the real clip length (its streams depend on it)."""
    saved = _SavedStorages(exclude=list(head.parameters()) + list(head.buffers()))
    x_btd = torch.randn(clips, frames, dim, device=device, dtype=param_dtype, requires_grad=input_requires_grad)
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
        # one clip and two: the difference is what each clip adds, the rest of one clip's is kept once a step
        head_one, head_two = (_measure_head(head, backbone.embed_dim, num_frames, device, param_dtype, backbone_trains,
                                            clips).bytes_as(param_dtype, dtype) for clips in (1, 2))
    block = measured.block
    block_bytes = block.bytes_as(param_dtype, dtype) if block is not None else 0
    replicated = (_replicated_block_bytes_per_frame(measured.block_input_shape, backbone_frames, dtype)
                  if block is not None else 0.0)
    return ActivationProfile(saved_per_frame=measured.saved.bytes_as(param_dtype, dtype) / backbone_frames,
                             block_per_frame=block_bytes / backbone_frames,
                             checkpointed=any(block.checkpointed for block in transformer_blocks(backbone)),
                             head_per_frame=(head_two - head_one) / num_frames,
                             head_per_step=max(0.0, 2 * head_one - head_two),
                             block_replicated_per_frame=replicated, full_blocks=measured.full_blocks,
                             tp_size=tp_size)


def measure_activation_bytes_per_frame(model: nn.Module, image_size: int, num_frames: int,
                                       device: torch.device | str, dtype: torch.dtype,
                                       backbone_frames: int = BACKBONE_MEASURE_FRAMES, tp_size: int = 1) -> float:
    """Bytes of activations per frame and rank at the peak of a training step (see ``measure_activations``)."""
    return measure_activations(model, image_size, num_frames, device, dtype, backbone_frames, tp_size).per_frame


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
                     dtype: torch.dtype, checkpointed: bool) -> ActivationProfile:
    """The profile of a tower of ``frozen`` frozen blocks followed by ``recorded`` trained ones, with all
    the trained ones checkpointed or none."""
    from vidprism_ds.model.backbone import build_shallow_frame_encoder
    from vidprism_ds.model.video_model import VideoClassifier

    backbone_cfg = dataclasses.replace(cfg.model.backbone, grad_checkpointing=checkpointed)
    if backbone_cfg.freeze == "partial":
        backbone_cfg = dataclasses.replace(backbone_cfg, trainable_blocks=recorded)
    tower = build_shallow_frame_encoder(backbone_cfg, recorded + frozen, seed=cfg.train.seed)
    return measure_activations(VideoClassifier(tower, head), backbone_cfg.image_size, cfg.data.num_frames, "cpu",
                               dtype)


def recorded_and_frozen_blocks(cfg: ExperimentConfig) -> tuple[int, int]:
    """(blocks autograd records, frozen blocks) of ``cfg``'s tower."""
    from vidprism_ds.model.backbone import clip_model_config

    backbone_cfg = cfg.model.backbone
    depth = clip_model_config(backbone_cfg.arch, backbone_cfg.image_size)["vision_cfg"]["layers"]
    return _tower_blocks(backbone_cfg, depth)


def measure_shallow_activations(cfg: ExperimentConfig, dtype: torch.dtype, checkpointed: bool) -> ActivationProfile:
    """The activation profile of ``cfg``'s model without building its tower, with every block that trains
    checkpointed or none (``vidprism_ds.train.memory.checkpointing`` gives the counts between): measured
    on towers of one block (with the real head), and of one more recorded or frozen block, the saved bytes
    extrapolated to the full depth. Exact: the blocks are identical, so each recorded (or frozen) block
    adds the same bytes. Per process (tp_size 1)."""
    from vidprism_ds.model.backbone import clip_model_config
    from vidprism_ds.model.build import build_experiment_head

    backbone_cfg = cfg.model.backbone
    model_cfg = clip_model_config(backbone_cfg.arch, backbone_cfg.image_size)
    full_recorded, full_frozen = _tower_blocks(backbone_cfg, model_cfg["vision_cfg"]["layers"])
    base_recorded = min(full_recorded, 1)
    base_frozen = 1 - base_recorded
    head = build_experiment_head(cfg, int(model_cfg["embed_dim"]), _num_classes(cfg))
    base = _measure_shallow(cfg, head, base_recorded, base_frozen, dtype, checkpointed)
    saved = base.saved_per_frame
    for more_recorded, more_frozen, count in ((1, 0, full_recorded - base_recorded), (0, 1, full_frozen - base_frozen)):
        if count > 0:
            deeper = _measure_shallow(cfg, head, base_recorded + more_recorded, base_frozen + more_frozen, dtype,
                                      checkpointed)
            saved += count * (deeper.saved_per_frame - base.saved_per_frame)
    return dataclasses.replace(base, saved_per_frame=saved, full_blocks=0 if base.checkpointed else full_recorded)
