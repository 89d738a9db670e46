"""Copies of a config with some fields changed (the tree's dataclasses are shared, never edited in place)."""

from __future__ import annotations

import dataclasses

from vidprism_ds.config.schema import ExperimentConfig


def replace_config(cfg: ExperimentConfig, **sections) -> ExperimentConfig:
    """A copy of ``cfg`` with some sections' fields replaced: replace_config(cfg, train={"output_dir": x})."""
    updated = {}
    for name, fields in sections.items():
        updated[name] = dataclasses.replace(getattr(cfg, name), **fields)
    return dataclasses.replace(cfg, **updated)
