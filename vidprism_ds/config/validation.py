"""Cross-field checks of the config tree. Each failure names the key that has to change.

``validate`` holds for every config (tests, the demo, tools that only estimate); what a train.py run on
real data needs on top (the shard directories exist) is ``vidprism_ds.train.run_config.check_run_data``.
Rules that code outside the config needs too (a model built from plain arguments, the expert placement,
the launch checks) are the public ``check_*`` functions below, and that code calls them: every rule is
written once, here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from vidprism_ds.config.schema import (
    BackboneConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    HeadConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from vidprism_ds.data.presets import CUSTOM, DATASET_NAMES, FRESH_CLASSIFIER, K710_SUBSETS, is_direction_sensitive
from vidprism_ds.data.sampling import CLIP_SAMPLING_MODES
from vidprism_ds.data.video_lists import LIST_FORMATS

# The values model.backbone.arch accepts: "tiny" (a small randomly initialised ViT for tests and the demo)
# and the CLIP ViTs whose configs open_clip bundles (vidprism_ds.model.backbone builds them).
TINY_ARCH = "tiny"
NAMED_ARCHS = ("ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-H-14", "ViT-g-14", "ViT-bigG-14")
BACKBONE_ARCHS = (TINY_ARCH,) + NAMED_ARCHS


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _require_finite(node: Any, key: str) -> None:
    """Refuse inf and nan in every float of the tree. YAML spells them ``.inf``/``.nan``; the range checks
    below would let ``inf`` through (``lr > 0``) and refuse ``nan`` with a misleading reason."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            _require_finite(getattr(node, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _require_finite(item, f"{key}[{i}]")
    elif isinstance(node, float):
        _require(math.isfinite(node), key, f"must be a finite number, got {node}")


# --------------------------------------------------------------------------------------------------
# Rules also called outside the config (by the model, the expert placement and the launch checks)
# --------------------------------------------------------------------------------------------------


def check_backbone_arch(arch: str) -> None:
    _require(arch in BACKBONE_ARCHS, "model.backbone.arch", f"{arch!r} is not one of {list(BACKBONE_ARCHS)}")


def check_trainable_blocks(freeze: str, trainable_blocks: int, num_blocks: Optional[int] = None) -> None:
    """``num_blocks``: the backbone's transformer block count, known once the backbone is built."""
    key = "model.backbone.trainable_blocks"
    _require(trainable_blocks >= 0, key, f"must be >= 0, got {trainable_blocks}")
    if num_blocks is not None:
        _require(trainable_blocks <= num_blocks, key, f"{trainable_blocks} is outside [0, {num_blocks}] (the "
                 f"backbone has {num_blocks} transformer blocks)")
    _require(freeze == "partial" or trainable_blocks == 0, key, "only applies with model.backbone.freeze=partial")


CHECKPOINTING_KEY = "model.backbone.grad_checkpointing"
CHECKPOINTING_MODES = ("auto", "none", "full")


@dataclasses.dataclass(frozen=True)
class CheckpointingPolicy:
    """``model.backbone.grad_checkpointing`` parsed: ``mode`` "auto", "none", "full" or "blocks" (then
    ``blocks`` of the transformer blocks that train recompute their forward in backward)."""

    mode: str
    blocks: int = 0

    def __str__(self) -> str:
        return f"blocks:{self.blocks}" if self.mode == "blocks" else self.mode

    @classmethod
    def of_count(cls, blocks: int, recorded_blocks: int) -> CheckpointingPolicy:
        """The policy that checkpoints ``blocks`` of ``recorded_blocks``: none, blocks:K or full."""
        if blocks == 0:
            return cls("none")
        return cls("full") if blocks == recorded_blocks else cls("blocks", blocks)

    def checkpointed_blocks(self, recorded_blocks: int) -> int:
        """How many of ``recorded_blocks`` (the blocks autograd records) recompute: all for "full"."""
        if self.mode == "auto":
            raise ValueError("an auto policy is resolved by the memory estimate, not here")
        check_checkpointed_blocks(self, recorded_blocks)
        return {"none": 0, "full": recorded_blocks}.get(self.mode, self.blocks)


def parse_checkpointing(value: bool | str) -> CheckpointingPolicy:
    """true/false (the key's earlier form) are "full"/"none"; "blocks:K" needs K >= 0."""
    if isinstance(value, bool):
        return CheckpointingPolicy("full" if value else "none")
    if value in CHECKPOINTING_MODES:
        return CheckpointingPolicy(value)
    prefix, _, count = value.partition(":")
    _require(prefix == "blocks" and count.isdigit(), CHECKPOINTING_KEY,
             f"{value!r} is not one of auto, none, full, blocks:K (K blocks, an integer >= 0), true, false")
    return CheckpointingPolicy("blocks", int(count))


def check_checkpointed_blocks(policy: CheckpointingPolicy, recorded_blocks: int) -> None:
    """``recorded_blocks``: the blocks that train (all, the last trainable_blocks, none), known once the
    backbone is built."""
    _require(policy.mode != "blocks" or policy.blocks <= recorded_blocks, CHECKPOINTING_KEY,
             f"blocks:{policy.blocks} asks for more blocks than the {recorded_blocks} that train")


def check_experts_per_rate(variant: str, experts_per_rate: int) -> None:
    key = "model.head.experts_per_rate"
    _require(experts_per_rate >= 1, key, "must be >= 1")
    # The routed variant exists for VidPrism only: the homogeneous baseline has one expert per rate.
    _require(variant != "homogeneous" or experts_per_rate == 1, key,
             f"must be 1 with model.variant=homogeneous, got {experts_per_rate}")


def check_homogeneous_fusion(variant: str, homogeneous_fusion: bool, rates: list[int], slow_rate_min: int) -> None:
    """The homogeneous + fusion ablation needs the homogeneous head, and a slow and a fast expert (by
    ``sampling_rates``, as in VidPrism): the fusion only joins streams of different speed, so without both
    it would build nothing and the ablation would silently be the plain homogeneous head."""
    if not homogeneous_fusion:
        return
    key = "model.head.homogeneous_fusion"
    _require(variant == "homogeneous", key, f"applies to model.variant=homogeneous only, got {variant!r} (VidPrism's "
             "fusion is model.head.use_fusion)")
    _require(any(r < slow_rate_min for r in rates) and any(r >= slow_rate_min for r in rates), key,
             f"needs a fast (< slow_rate_min={slow_rate_min}) and a slow rate in model.head.sampling_rates, "
             f"got {rates}")


def check_router_topk(router_topk: int, experts_per_rate: int) -> None:
    _require(1 <= router_topk <= experts_per_rate, "model.head.router_topk",
             f"must be in [1, experts_per_rate={experts_per_rate}]")


def check_ep_size(ep_size: int, num_experts: Optional[int] = None) -> None:
    """``parallel.ep_size`` is >= 1 and divides the model's expert count, when that is known: every EP rank
    holds the same number of experts (DeepSpeed's ``num_local_experts``)."""
    _require(ep_size >= 1, "parallel.ep_size", f"must be >= 1, got {ep_size}")
    if num_experts is not None:
        _require(num_experts % ep_size == 0, "parallel.ep_size",
                 f"{ep_size} does not divide the model's {num_experts} experts (len(model.head.sampling_rates) "
                 f"x model.head.experts_per_rate); every EP rank holds the same number of experts")


# --------------------------------------------------------------------------------------------------
# The config tree, one section at a time
# --------------------------------------------------------------------------------------------------


def _validate_model(model: ModelConfig) -> None:
    backbone, head = model.backbone, model.head
    check_backbone_arch(backbone.arch)
    check_trainable_blocks(backbone.freeze, backbone.trainable_blocks)
    parse_checkpointing(backbone.grad_checkpointing)
    _require(model.num_classes >= 0, "model.num_classes", "must be >= 0 (0 = from the label list)")
    _validate_sampling_rates(head)
    _require(0.0 < head.sampler_tau, "model.head.sampler_tau", "must be > 0")
    _require(0.0 <= head.sampler_alpha_mix <= 1.0, "model.head.sampler_alpha_mix", "must be in [0, 1]")
    _require(head.rank_score_temp > 0, "model.head.rank_score_temp", "must be > 0")
    _require(head.expert_heads >= 1, "model.head.expert_heads", "must be >= 1")
    _require(head.readout_heads >= 1, "model.head.readout_heads", "must be >= 1")
    _require(head.expert_ffn_mult >= 1, "model.head.expert_ffn_mult", "must be >= 1")
    check_experts_per_rate(model.variant, head.experts_per_rate)
    check_router_topk(head.router_topk, head.experts_per_rate)
    check_homogeneous_fusion(model.variant, head.homogeneous_fusion, head.sampling_rates, head.slow_rate_min)
    _validate_frame_time_encoding(head)
    _require(head.router_capacity_factor is None or head.router_capacity_factor > 0,
             "model.head.router_capacity_factor", "must be > 0 or null")
    if head.mode == "official":
        for key, value, expected in (("experts_per_rate", head.experts_per_rate, 1),
                                     ("use_sampler", head.use_sampler, True),
                                     ("use_fusion", head.use_fusion, True),
                                     ("expert_pos_embed", head.expert_pos_embed, False),
                                     ("frame_time_encoding", head.frame_time_encoding, False),
                                     ("homogeneous_fusion", head.homogeneous_fusion, False)):
            _require(value == expected, f"model.head.{key}",
                     f"must be {expected} with model.head.mode=official (the official model has no such option)")
    for field_ in dataclasses.fields(model.loss):
        _require(getattr(model.loss, field_.name) >= 0, f"model.loss.{field_.name}", "loss weights must be >= 0")


def _validate_frame_time_encoding(head: HeadConfig) -> None:
    _require(head.frame_time_periods >= 1, "model.head.frame_time_periods",
             f"must be >= 1, got {head.frame_time_periods}")
    _require(head.frame_time_min_period_s > 0, "model.head.frame_time_min_period_s",
             f"must be > 0 seconds, got {head.frame_time_min_period_s}")
    _require(head.frame_time_max_period_s >= head.frame_time_min_period_s, "model.head.frame_time_max_period_s",
             f"{head.frame_time_max_period_s} is below model.head.frame_time_min_period_s="
             f"{head.frame_time_min_period_s}")


def _validate_sampling_rates(head: HeadConfig) -> None:
    rates = head.sampling_rates
    _require(len(rates) >= 1, "model.head.sampling_rates", "needs at least one rate")
    _require(all(r >= 1 for r in rates), "model.head.sampling_rates", f"rates must be >= 1, got {rates}")
    _require(len(set(rates)) == len(rates), "model.head.sampling_rates", f"rates must be distinct, got {rates}")
    _require(rates == sorted(rates), "model.head.sampling_rates", f"rates must be ascending, got {rates}")
    fast = [r for r in rates if r < head.slow_rate_min]
    slow = [r for r in rates if r >= head.slow_rate_min]
    for f in fast:
        for s in slow:
            # the fast->slow temporal conv strides by s/f, so it must divide evenly
            _require(s % f == 0, "model.head.sampling_rates",
                     f"slow rate {s} is not a multiple of fast rate {f} (fast->slow conv stride)")


def _validate_data(data: DataConfig, backbone: BackboneConfig) -> None:
    _require(data.num_frames >= 1, "data.num_frames", "must be >= 1")
    _require(data.image_size >= 32, "data.image_size", "must be >= 32")
    _require(data.image_size == backbone.image_size, "data.image_size",
             f"{data.image_size} differs from model.backbone.image_size={backbone.image_size}")
    _require(0.0 <= data.grayscale_prob <= 1.0, "data.grayscale_prob", "must be in [0, 1]")
    _require(0.0 < data.crop_scale_min <= 1.0, "data.crop_scale_min", "must be in (0, 1]")
    _require(data.num_workers >= 0, "data.num_workers", "must be >= 0")
    _require(data.test_clips >= 1, "data.test_clips", "must be >= 1")
    _require(data.test_crops in (1, 3, 4), "data.test_crops", "must be 1, 3 or 4")
    _require(data.dataset in DATASET_NAMES, "data.dataset", f"{data.dataset!r} is not one of {list(DATASET_NAMES)}")
    _require(data.dataset != CUSTOM or bool(data.labels), "data.labels",
             "dataset 'custom' needs a label list file (one class name per line)")
    _require(not (data.hflip and is_direction_sensitive(data.dataset)), "data.hflip",
             f"must be false for {data.dataset!r}: flipping changes its classes (direction-sensitive)")
    # No preset knows whether a custom dataset's classes depend on left/right ("swiping left"), so a
    # flip copied from a Kinetics recipe must not apply silently: the choice is made explicitly.
    _require(data.dataset != CUSTOM or data.hflip is not None, "data.hflip",
             "dataset 'custom' needs an explicit true or false: true only if no class changes when the video "
             "is mirrored (no left/right or clockwise classes)")
    _require(data.shuffle_buffer >= 0, "data.shuffle_buffer", "must be >= 0 (0 or 1 = no shuffling)")
    _require(data.shuffle_block_shards >= 1, "data.shuffle_block_shards",
             f"must be >= 1 (shards per shuffle block), got {data.shuffle_block_shards}")
    _require(data.list_format in LIST_FORMATS, "data.list_format", f"{data.list_format!r} is not one of {list(LIST_FORMATS)}")
    _require(data.eval_chunk_mib >= 1, "data.eval_chunk_mib", "must be >= 1")
    _require(data.max_bad_samples >= 0, "data.max_bad_samples", "must be >= 0 (0 = stop at the first damaged sample)")
    _validate_clip_sampling(data)


def _validate_clip_sampling(data: DataConfig) -> None:
    _require(data.clip_sampling in CLIP_SAMPLING_MODES, "data.clip_sampling",
             f"{data.clip_sampling!r} is not one of {list(CLIP_SAMPLING_MODES)}")
    _require(data.dense_stride >= 1, "data.dense_stride", f"must be >= 1, got {data.dense_stride}")
    _require(data.multirate_burst_frames >= 0, "data.multirate_burst_frames",
             f"must be >= 0 (0 = half of data.num_frames), got {data.multirate_burst_frames}")
    if data.clip_sampling == "multirate":
        # a multirate clip needs frames from both the base and a burst
        _require(data.num_frames >= 2, "data.num_frames", "must be >= 2 with data.clip_sampling=multirate")
        _require(data.multirate_burst_frames < data.num_frames, "data.multirate_burst_frames",
                 f"{data.multirate_burst_frames} leaves no base frame in a {data.num_frames}-frame clip "
                 "(data.num_frames); it must be below it")


def _validate_optim(optim: OptimConfig) -> None:
    _require(optim.lr > 0, "optim.lr", "must be > 0")
    _require(optim.clip_ratio >= 0, "optim.clip_ratio", "must be >= 0")
    _require(optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _require(len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas), "optim.betas",
             f"must be two numbers in [0, 1), got {optim.betas}")
    _require(optim.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    _require(0.0 <= optim.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "must be in [0, 1]")
    _require(optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 = off)")


def _validate_train(train: TrainConfig, data: DataConfig) -> None:
    _require(train.epochs >= 1, "train.epochs", "must be >= 1")
    _require(train.micro_batch >= 1, "train.micro_batch", "must be >= 1")
    _require(train.grad_accum >= 1, "train.grad_accum", "must be >= 1")
    _require(train.save_every_steps >= 0, "train.save_every_steps", "must be >= 0 (0 = epoch ends only)")
    _require(train.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1")
    _require(train.max_steps >= 0, "train.max_steps", "must be >= 0")
    _require(train.stop_check_every >= 1, "train.stop_check_every", "must be >= 1")
    # the world size is known only at launch: vidprism_ds.train.batch.plan_batch checks divisibility there
    _require(train.global_batch >= 0, "train.global_batch",
             f"must be >= 0 (0 = micro_batch x grad_accum x world size), got {train.global_batch}")
    _require(train.lr_base_batch >= 0, "train.lr_base_batch", f"must be >= 0, got {train.lr_base_batch}")
    _require(train.lr_scaling == "none" or train.lr_base_batch > 0, "train.lr_base_batch",
             f"train.lr_scaling={train.lr_scaling} scales optim.lr by the global batch relative to the batch "
             "optim.lr was tuned for; set that batch here")
    _require(0.0 <= train.memory_limit_fraction <= 1.0, "train.memory_limit_fraction",
             "must be in [0, 1] (0 = no check)")
    class_maps = ("",) + K710_SUBSETS + (FRESH_CLASSIFIER,)
    _require(train.init_class_map in class_maps, "train.init_class_map",
             f"{train.init_class_map!r} is not one of {list(class_maps)} ('' = same classes as init_from, "
             "'fresh' = new classifier)")
    _require(not train.init_class_map or bool(train.init_from), "train.init_class_map",
             "slices the classifier of train.init_from, which is not set")
    _require(train.init_class_map in ("", FRESH_CLASSIFIER) or data.dataset in (train.init_class_map, CUSTOM),
             "train.init_class_map",
             f"maps the K710 classifier to {train.init_class_map!r} classes but data.dataset is {data.dataset!r}")


def check_frame_times_reach_the_head(clip_sampling: str, variant: str, frame_time_encoding: bool) -> None:
    """A multirate clip mixes whole-video base frames with consecutive burst frames; without the frames'
    times the head cannot tell them apart (docs/model.md#frame-timestamps-multirate-clips). Mean pooling
    is a frame bag and ignores time anyway."""
    _require(clip_sampling != "multirate" or variant == "meanpool" or frame_time_encoding,
             "model.head.frame_time_encoding",
             f"must be true with data.clip_sampling=multirate (model.variant={variant}): without the "
             f"frames' times the head cannot tell base frames from burst frames")


def check_multirate_has_a_fast_group(cfg: ExperimentConfig) -> None:
    """VidPrism reads a multirate clip's burst with its fast rate groups (docs/model.md#multirate-clips-in-the-head)."""
    head = cfg.model.head
    _require(cfg.data.clip_sampling != "multirate" or cfg.model.variant != "vidprism"
             or any(r < head.slow_rate_min for r in head.sampling_rates), "model.head.slow_rate_min",
             f"{head.slow_rate_min} makes every rate of {list(head.sampling_rates)} slow; with "
             "data.clip_sampling=multirate a fast rate group (rate < slow_rate_min) reads the burst frames")


def check_multirate_experts_have_positions(cfg: ExperimentConfig) -> None:
    """VidPrism's fast experts read a multirate clip's burst tokens after their segment tokens; without learned
    positions the frequency benchmark's blink classes stayed near chance (docs/model.md#multirate-clips-in-the-head)."""
    _require(cfg.data.clip_sampling != "multirate" or cfg.model.variant != "vidprism" or cfg.model.head.expert_pos_embed,
             "model.head.expert_pos_embed",
             "must be true with data.clip_sampling=multirate (model.variant=vidprism): the fast experts tell "
             "how fast an event repeats in the burst from where each burst token sits, which their attention "
             "reads from learned positions (docs/model.md#multirate-clips-in-the-head)")


def validate(cfg: ExperimentConfig) -> None:
    _require_finite(cfg, "")  # first: the range checks below assume real numbers
    _validate_model(cfg.model)
    _validate_data(cfg.data, cfg.model.backbone)
    _validate_optim(cfg.optim)
    _validate_train(cfg.train, cfg.data)
    check_frame_times_reach_the_head(cfg.data.clip_sampling, cfg.model.variant, cfg.model.head.frame_time_encoding)
    check_multirate_has_a_fast_group(cfg)
    check_multirate_experts_have_positions(cfg)
    head = cfg.model.head
    check_ep_size(cfg.parallel.ep_size, len(head.sampling_rates) * head.experts_per_rate)
    # the world size and the ViT's heads are known only at launch: parallel.dims.ParallelDims and
    # parallel.tensor_parallel.check_tp_divides check that tp_size divides them
    _require(cfg.parallel.tp_size >= 1, "parallel.tp_size", f"must be >= 1, got {cfg.parallel.tp_size}")
    _require(cfg.logging.log_every_steps >= 1, "logging.log_every_steps", "must be >= 1")
