"""Rebuild a trained classifier from an exported state dict and the config it was trained with.

An export is a consolidated fp32 state dict of ``VideoClassifier`` (single-process parameter names,
experts included: ``python train.py --export PATH``). Its experiment config is looked for next to it:
``--config`` when given, else ``PATH`` with the suffix ``.yaml``, else ``config.yaml`` in its folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.data.presets import load_class_names
from vidprism_ds.model.build import build_experiment_model
from vidprism_ds.model.video_model import VideoClassifier


@dataclass
class LoadedModel:
    cfg: ExperimentConfig
    model: VideoClassifier
    class_names: list[str]


def config_candidates(export_path: str | Path) -> list[Path]:
    export_path = Path(export_path)
    return [export_path.with_suffix(".yaml"), export_path.parent / "config.yaml"]


def find_config(export_path: str | Path, config_path: Optional[str | Path] = None) -> Path:
    if config_path:
        return Path(config_path)
    for candidate in config_candidates(export_path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no config for {export_path}: looked for "
                            f"{', '.join(str(c) for c in config_candidates(export_path))}; pass --config")


def class_names_of(cfg: ExperimentConfig) -> list[str]:
    names = load_class_names(cfg.data.dataset, cfg.data.labels)
    if cfg.model.num_classes and cfg.model.num_classes != len(names):
        # a checkpoint trained with an explicit class count on a dataset whose list differs: name by index
        return [f"class {c}" for c in range(cfg.model.num_classes)]
    return names


def load_export(export_path: str | Path, config_path: Optional[str | Path] = None,
                overrides: Iterable[str] = ()) -> LoadedModel:
    """Build the model the config describes and load the export into it (strictly: every key must match)."""
    export_path = Path(export_path)
    if not export_path.is_file():
        raise FileNotFoundError(f"{export_path}: not a file (expected an exported state dict)")
    cfg = load_config(find_config(export_path, config_path), overrides)
    class_names = class_names_of(cfg)
    # The export holds every weight, the backbone's included: do not read pretrained weights as well.
    model_cfg = dataclasses.replace(cfg.model, backbone=dataclasses.replace(cfg.model.backbone, pretrained_path=None))
    model = build_experiment_model(cfg, len(class_names), model_cfg).model
    state = torch.load(export_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return LoadedModel(cfg, model.eval(), class_names)
