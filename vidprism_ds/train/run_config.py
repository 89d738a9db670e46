"""The experiment config a train.py run resolves to, and the files that come with the code.

``load_run_config`` turns train.py's config arguments (a YAML file or the embedded demo, ``--set``
overrides, evaluation only) into the config; ``ds_config_path`` finds the DeepSpeed JSON; ``check_run_data``
checks what a run on real data needs beyond ``validate`` (the shard directories). train.py
(``vidprism_ds.train.cli``), the memory estimate's command line (``python -m vidprism_ds.train.memory``),
slurm/resolve_settings.py and the demo all use these, so each resolves a run exactly as train.py does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.data.manifest import MANIFEST_NAME

# Files that come with the code are found from this file, not from the current folder, so that
# train.py (and every tool that resolves a run as it does) runs from any folder.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The DeepSpeed JSONs are package data (vidprism_ds/train/ds_configs/, which the checkout's ds_configs/
# links to), so an installed package finds its default too, not only a checkout or editable install.
DEFAULT_DS_CONFIG = Path(__file__).with_name("ds_configs") / "zero2.json"
# train.py without --config: the embedded demo, packaged next to this file
DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def load_run_config(config_path: Optional[str | Path], overrides: Sequence[str] = (),
                    eval_only: bool = False) -> ExperimentConfig:
    """The experiment config train.py runs: ``config_path`` (or the embedded demo) with the ``--set``
    overrides, evaluation-only when ``eval_only`` (train.py's --eval-only and --export). Raises ConfigError."""
    overrides = list(overrides)
    if eval_only:
        overrides.append("train.eval_only=true")
    return load_config(config_path or DEMO_CONFIG, overrides)


def ds_config_path(given: Optional[str]) -> Path:
    """``--deepspeed_config`` as a file: the packaged ``ds_configs/zero2.json`` when not given. A given
    relative path is the user's, from the current folder; when it is not there but the repository has it
    (``ds_configs/zero1.json`` typed outside the repository), the error names the repository's file."""
    if given is None:
        return DEFAULT_DS_CONFIG
    path = Path(given)
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).is_file():
        raise ConfigError(f"--deepspeed_config: {given} does not exist in the current folder ({Path.cwd()}); "
                          f"the repository's is {REPO_ROOT / path}")
    return path


def _require_shards(shard_dir: str, key: str) -> None:
    if not shard_dir:
        raise ConfigError(f"{key}: is empty; a run on real data needs a shard directory (data_prep/shard.py "
                          "--out); train.py without --config runs the demo, which makes its own")
    if not Path(shard_dir).is_dir():
        raise ConfigError(f"{key}: {shard_dir} is not a directory")
    if not (Path(shard_dir) / MANIFEST_NAME).is_file():
        raise ConfigError(f"{key}: {shard_dir} has no {MANIFEST_NAME}; is it the --out of a finished "
                          "data_prep/shard.py run?")


def check_run_data(cfg: ExperimentConfig) -> None:
    """What train.py needs beyond ``validate`` for a run on real data (not the demo, which fills the shard
    keys itself): the shard directories, checked in seconds rather than after the model is built. The
    validation shards are needed by every run: training ends with an evaluation, as does --eval-only."""
    if not cfg.train.eval_only:
        _require_shards(cfg.data.train_shards, "data.train_shards")
    _require_shards(cfg.data.val_shards, "data.val_shards")
