"""The model an experiment trains, built from the whole config tree.

The model's builders take the model config plus the clip layout; the layout (how many frames a clip has,
and how many of them are a multirate clip's burst part) is the data config's. This module is the one place
that reads it off the data config, so the trainer, the memory estimate and the export loader build the
same model.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from vidprism_ds.config.schema import ExperimentConfig, ModelConfig
from vidprism_ds.data.clip_settings import config_clip_sampling
from vidprism_ds.model.video_model import BuiltModel, build_head, build_video_model


def build_experiment_model(cfg: ExperimentConfig, num_classes: int,
                           model_cfg: Optional[ModelConfig] = None) -> BuiltModel:
    """``build_video_model`` for ``cfg``'s clips and seed; ``model_cfg`` replaces ``cfg.model`` (e.g. without
    pretrained weights)."""
    return build_video_model(model_cfg or cfg.model, num_classes, cfg.data.num_frames, seed=cfg.train.seed,
                             burst_frames=config_clip_sampling(cfg.data).burst_part)


def build_experiment_head(cfg: ExperimentConfig, dim: int, num_classes: int) -> nn.Module:
    """The temporal head alone (width ``dim``) for ``cfg``'s clips, drawn from the current random state."""
    return build_head(cfg.model, dim, num_classes, max_frames=cfg.data.num_frames,
                      burst_frames=config_clip_sampling(cfg.data).burst_part)
