"""Cross-field checks of the config tree. Each failure names the key that has to change.

``validate`` holds for every config (tests, the demo, tools that only estimate); ``check_run_data`` adds
what a train.py run on real data needs on top (the shard directories exist).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from vidprism_ds.config.schema import ConfigError, DataConfig, ExperimentConfig
from vidprism_ds.data.manifest import MANIFEST_NAME
from vidprism_ds.data.presets import CUSTOM, DATASET_NAMES, FRESH_CLASSIFIER, K710_SUBSETS, is_direction_sensitive
from vidprism_ds.data.video_lists import LIST_FORMATS

KNOWN_BACKBONES = ("tiny", "ViT-B-16", "ViT-B-32", "ViT-L-14")


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


def effective_hflip(data: DataConfig) -> bool:
    """Whether training clips are flipped: ``data.hflip`` with null resolved by the preset (flip unless
    direction-sensitive). A direction-sensitive preset is never flipped, whatever ``data.hflip`` says, and
    a custom dataset only with an explicit true (validation refuses null for it)."""
    if is_direction_sensitive(data.dataset):
        return False
    if data.hflip is None:
        return data.dataset != CUSTOM
    return data.hflip


def validate(cfg: ExperimentConfig) -> None:
    _require_finite(cfg, "")  # first: the range checks below assume real numbers
    model, head, data, optim, train = cfg.model, cfg.model.head, cfg.data, cfg.optim, cfg.train

    _require(model.backbone.arch in KNOWN_BACKBONES, "model.backbone.arch",
             f"{model.backbone.arch!r} is not one of {list(KNOWN_BACKBONES)}")
    _require(model.backbone.trainable_blocks >= 0, "model.backbone.trainable_blocks", "must be >= 0")
    _require(model.backbone.freeze == "partial" or model.backbone.trainable_blocks == 0,
             "model.backbone.trainable_blocks", "only applies with model.backbone.freeze=partial")
    _require(model.num_classes >= 0, "model.num_classes", "must be >= 0 (0 = from the label list)")

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
    _require(0.0 < head.sampler_tau, "model.head.sampler_tau", "must be > 0")
    _require(0.0 <= head.sampler_alpha_mix <= 1.0, "model.head.sampler_alpha_mix", "must be in [0, 1]")
    _require(head.rank_score_temp > 0, "model.head.rank_score_temp", "must be > 0")
    _require(head.expert_heads >= 1, "model.head.expert_heads", "must be >= 1")
    _require(head.readout_heads >= 1, "model.head.readout_heads", "must be >= 1")
    _require(head.expert_ffn_mult >= 1, "model.head.expert_ffn_mult", "must be >= 1")
    _require(head.experts_per_rate >= 1, "model.head.experts_per_rate", "must be >= 1")
    _require(1 <= head.router_topk <= head.experts_per_rate, "model.head.router_topk",
             f"must be in [1, experts_per_rate={head.experts_per_rate}]")
    _require(head.router_capacity_factor is None or head.router_capacity_factor > 0,
             "model.head.router_capacity_factor", "must be > 0 or null")
    if head.mode == "official":
        for key, value, expected in (("experts_per_rate", head.experts_per_rate, 1),
                                     ("use_sampler", head.use_sampler, True),
                                     ("use_fusion", head.use_fusion, True),
                                     ("expert_pos_embed", head.expert_pos_embed, False)):
            _require(value == expected, f"model.head.{key}",
                     f"must be {expected} with model.head.mode=official (the official model has no such option)")

    for name in ("ce", "balance", "contrastive", "diversity", "rank", "router_aux", "router_z"):
        _require(getattr(model.loss, name) >= 0, f"model.loss.{name}", "loss weights must be >= 0")

    _require(data.num_frames >= 1, "data.num_frames", "must be >= 1")
    _require(data.image_size >= 32, "data.image_size", "must be >= 32")
    _require(data.image_size == model.backbone.image_size, "data.image_size",
             f"{data.image_size} differs from model.backbone.image_size={model.backbone.image_size}")
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
    _require(data.list_format in LIST_FORMATS, "data.list_format", f"{data.list_format!r} is not one of {list(LIST_FORMATS)}")

    _require(optim.lr > 0, "optim.lr", "must be > 0")
    _require(optim.clip_ratio >= 0, "optim.clip_ratio", "must be >= 0")
    _require(optim.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    _require(len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas), "optim.betas",
             f"must be two numbers in [0, 1), got {optim.betas}")
    _require(optim.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    _require(0.0 <= optim.min_lr_ratio <= 1.0, "optim.min_lr_ratio", "must be in [0, 1]")
    _require(optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 = off)")

    _require(train.epochs >= 1, "train.epochs", "must be >= 1")
    _require(train.micro_batch >= 1, "train.micro_batch", "must be >= 1")
    _require(train.grad_accum >= 1, "train.grad_accum", "must be >= 1")
    _require(train.save_every_steps >= 0, "train.save_every_steps", "must be >= 0 (0 = epoch ends only)")
    _require(train.keep_checkpoints >= 1, "train.keep_checkpoints", "must be >= 1")
    _require(train.max_steps >= 0, "train.max_steps", "must be >= 0")
    _require(train.stop_check_every >= 1, "train.stop_check_every", "must be >= 1")
    _require(0.0 <= train.memory_limit_fraction <= 1.0, "train.memory_limit_fraction",
             "must be in [0, 1] (0 = no check)")
    _require(data.eval_chunk_mib >= 1, "data.eval_chunk_mib", "must be >= 1")
    _require(data.max_bad_samples >= 0, "data.max_bad_samples", "must be >= 0 (0 = stop at the first damaged sample)")
    class_maps = ("",) + K710_SUBSETS + (FRESH_CLASSIFIER,)
    _require(train.init_class_map in class_maps, "train.init_class_map",
             f"{train.init_class_map!r} is not one of {list(class_maps)} ('' = same classes as init_from, "
             "'fresh' = new classifier)")
    _require(not train.init_class_map or bool(train.init_from), "train.init_class_map",
             "slices the classifier of train.init_from, which is not set")
    _require(train.init_class_map in ("", FRESH_CLASSIFIER) or data.dataset in (train.init_class_map, CUSTOM),
             "train.init_class_map",
             f"maps the K710 classifier to {train.init_class_map!r} classes but data.dataset is {data.dataset!r}")

    _require(cfg.parallel.ep_size >= 1, "parallel.ep_size", "must be >= 1")
    num_experts = len(rates) * head.experts_per_rate
    _require(num_experts % cfg.parallel.ep_size == 0, "parallel.ep_size",
             f"{cfg.parallel.ep_size} does not divide the {num_experts} experts "
             f"({len(rates)} rates x {head.experts_per_rate} per rate)")
    _require(cfg.logging.log_every_steps >= 1, "logging.log_every_steps", "must be >= 1")


def _require_shards(shard_dir: str, key: str) -> None:
    _require(bool(shard_dir), key, "is empty; a run on real data needs a shard directory (data_prep/shard.py "
             "--out); train.py without --config runs the demo, which makes its own")
    _require(Path(shard_dir).is_dir(), key, f"{shard_dir} is not a directory")
    _require((Path(shard_dir) / MANIFEST_NAME).is_file(), key,
             f"{shard_dir} has no {MANIFEST_NAME}; is it the --out of a finished data_prep/shard.py run?")


def check_run_data(cfg: ExperimentConfig) -> None:
    """What train.py needs beyond ``validate`` for a run on real data (not the demo, which fills the shard
    keys itself): the shard directories, checked in seconds rather than after the model is built. The
    validation shards are needed by every run: training ends with an evaluation, as does --eval-only."""
    if not cfg.train.eval_only:
        _require_shards(cfg.data.train_shards, "data.train_shards")
    _require_shards(cfg.data.val_shards, "data.val_shards")
