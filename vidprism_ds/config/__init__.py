"""Typed experiment configuration: ``load_config(path, overrides)`` is the entry point."""

from vidprism_ds.config.io import dump_yaml, from_dict, load_config, parse_override, to_dict
from vidprism_ds.config.schema import (
    BackboneConfig,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    HeadConfig,
    LoggingConfig,
    LossWeights,
    ModelConfig,
    OptimConfig,
    ParallelConfig,
    TrainConfig,
)
from vidprism_ds.config.validation import validate

__all__ = [
    "BackboneConfig", "ConfigError", "DataConfig", "ExperimentConfig", "HeadConfig", "LoggingConfig",
    "LossWeights", "ModelConfig", "OptimConfig", "ParallelConfig", "TrainConfig",
    "dump_yaml", "from_dict", "load_config", "parse_override", "to_dict", "validate",
]
