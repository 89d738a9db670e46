"""Training checkpoints: DeepSpeed state + per-expert weights + a metadata file, then ``latest``.

Layout under ``<output_dir>/checkpoints``::

    step_00000120/            DeepSpeed's files (module, expert slots, ZeRO optimizer partitions)
        experts/expert_000.pt   per global expert (any ep_size can load them)
        vidprism_meta.json      written by rank 0 after every rank finished: marks the tag complete
    latest                    the newest complete tag, replaced atomically, written last

A kill at any moment leaves either the previous ``latest`` or a newer complete tag; a tag without
its metadata file is incomplete and never loaded. Resuming at the same world size and ``ep_size``
restores everything (weights, optimizer, schedule, step, data position); at another topology the
weights are loaded and optimizer state starts fresh (ZeRO partitions are laid out per rank).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch.distributed as dist

from vidprism_ds.parallel import ParallelContext
from vidprism_ds.parallel.checkpoint import load_module_weights, save_expert_files

META_FILE = "vidprism_meta.json"
LATEST_FILE = "latest"
TAG_PATTERN = re.compile(r"^step_(\d{8})$")


@dataclass
class CheckpointMeta:
    tag: str
    step: int  # optimizer steps done
    epoch: int  # epoch in progress when saved
    batches_in_epoch: int  # micro-batches of that epoch already consumed on each rank
    world_size: int
    ep_size: int
    config: dict


def tag_for_step(step: int) -> str:
    return f"step_{step:08d}"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_meta(tag_dir: Path) -> Optional[CheckpointMeta]:
    try:
        return CheckpointMeta(**json.loads((tag_dir / META_FILE).read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def complete_tags(ckpt_root: Path) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not ckpt_root.is_dir():
        return []
    tags = [p.name for p in ckpt_root.iterdir() if TAG_PATTERN.match(p.name) and read_meta(p) is not None]
    return sorted(tags)


def newest_complete(ckpt_root: Path) -> Optional[CheckpointMeta]:
    """The tag ``latest`` names if it is complete, else the newest complete tag (a kill between the
    metadata and the pointer leaves a newer complete tag than ``latest``)."""
    tags = complete_tags(ckpt_root)
    if not tags:
        return None
    pointer = ckpt_root / LATEST_FILE
    named = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    newest = tags[-1]
    if named in tags and named >= newest:
        newest = named
    return read_meta(ckpt_root / newest)


class CheckpointManager:
    def __init__(self, output_dir: str | Path, ctx: ParallelContext, keep: int, config: dict):
        self.root = Path(output_dir) / "checkpoints"
        self.ctx = ctx
        self.keep = keep
        self.config = config

    def save(self, engine, step: int, epoch: int, batches_in_epoch: int) -> Path:
        """Collective: every rank calls it."""
        tag = tag_for_step(step)
        tag_dir = self.root / tag
        meta = CheckpointMeta(tag=tag, step=step, epoch=epoch, batches_in_epoch=batches_in_epoch,
                              world_size=self.ctx.world_size, ep_size=self.ctx.ep_size, config=self.config)
        if self.ctx.rank == 0 and tag_dir.exists():
            shutil.rmtree(tag_dir)  # a half-written tag of the same step from a killed run
        dist.barrier()
        engine.save_checkpoint(str(self.root), tag=tag, client_state={"vidprism": asdict(meta)},
                               save_latest=False)
        save_expert_files(engine.module, self.ctx, tag_dir)
        dist.barrier()  # every rank's files are on disk before the tag is marked complete
        if self.ctx.rank == 0:
            _write_atomically(tag_dir / META_FILE, json.dumps(asdict(meta), indent=1))
            _write_atomically(self.root / LATEST_FILE, tag + "\n")
            self._prune()
        dist.barrier()
        return tag_dir

    def _prune(self) -> None:
        tags = complete_tags(self.root)
        for old in tags[:-self.keep]:
            shutil.rmtree(self.root / old, ignore_errors=True)

    def resume(self, engine) -> Optional[CheckpointMeta]:
        """Load the newest complete checkpoint into ``engine``; None when there is none."""
        meta = newest_complete(self.root)
        if meta is None:
            return None
        same_topology = meta.world_size == self.ctx.world_size and meta.ep_size == self.ctx.ep_size
        if same_topology:
            path, _ = engine.load_checkpoint(str(self.root), tag=meta.tag, load_optimizer_states=True,
                                             load_lr_scheduler_states=True)
            if path is None:
                raise RuntimeError(f"DeepSpeed could not load checkpoint {self.root / meta.tag}")
        else:
            load_module_weights(engine.module, self.root / meta.tag)
        return meta
