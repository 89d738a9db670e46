"""The trained model as one fp32 state dict with single-process names, and its config beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from vidprism_ds.config.io import dump_yaml
from vidprism_ds.config.schema import ExperimentConfig
from vidprism_ds.parallel import ParallelContext
from vidprism_ds.parallel.checkpoint import consolidated_state_dict
from vidprism_ds.utils.files import atomic_torch_save, atomic_write_text


def export_model(module: nn.Module, ctx: ParallelContext, cfg: ExperimentConfig, path: str | Path) -> Optional[Path]:
    """Collective (the experts are gathered from their ranks, tensor-parallel shards from their TP group
    and assembled under their tp_size 1 names, so the file is the same whatever tp_size trained it);
    rank 0 writes ``path`` and ``path`` with the suffix ``.yaml`` and returns ``path``, the other ranks
    return None."""
    state = consolidated_state_dict(module, ctx)
    if ctx.rank != 0:
        return None
    path = Path(path)
    # atomic: a full disk or a kill leaves the previous export (or none), never a truncated file
    atomic_torch_save(state, path)
    atomic_write_text(path.with_suffix(".yaml"), dump_yaml(cfg))
    return path
