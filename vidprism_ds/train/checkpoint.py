"""Training checkpoints: DeepSpeed state + per-expert weights + a metadata file, then ``latest``.

Layout under ``<output_dir>/checkpoints``::

    step_00000120/            DeepSpeed's files (module, expert slots, ZeRO optimizer partitions)
        experts/expert_000.pt   per global expert (any ep_size can load them)
        optimizer/              fp32 masters, Adam moments and step per parameter, single-process names
                                (vidprism_ds.parallel.optimizer_state: any topology can load them)
        vidprism_meta.json      written by rank 0 after every rank finished: marks the tag complete
    latest                    the newest complete tag, replaced atomically, written last

A kill at any moment leaves either the previous ``latest`` or a newer complete tag; a tag without
its metadata file is incomplete and never loaded. The metadata file records every file of the tag
with its size and SHA-256; resume verifies them and falls back to the next older complete tag, saying
which tag it skipped and why (a node killed while the filesystem flushed, a bad disk). A tag is never
deleted before a newer one is complete, and saving the same step again (the epoch-end save after a
``save_every_steps`` save) only rewrites the metadata: the state is the same. Resuming at the same world
size, ``ep_size`` and ``tp_size`` restores everything from DeepSpeed's own files (weights, optimizer,
schedule, step); at another topology (ZeRO partitions are laid out per rank) the weights
come from the module and per-expert files and the optimizer state from ``optimizer/``, so training goes
on as the original topology would have (tags written before ``optimizer/`` existed: fresh optimizer). The
data position (epoch, global batches done) is the same at every topology: the resumed run continues with
the next global batch of the global order (``vidprism_ds.data.global_order``).
Every checkpoint file is loaded without running code (``vidprism_ds.train.checkpoint_engine``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch.distributed as dist

from vidprism_ds.parallel import ParallelContext
from vidprism_ds.parallel.checkpoint import load_module_weights, save_expert_files
from vidprism_ds.parallel.optimizer_state import load_optimizer_state, save_optimizer_state
from vidprism_ds.utils.files import atomic_write_text, file_sha256, translate_out_of_space

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
    # every file of the tag (path relative to it) -> {"bytes", "sha256"}; empty in tags written before
    # the integrity check existed (those are trusted as they are)
    files: dict = field(default_factory=dict)
    # the batch it was trained with (0 in tags written before they were recorded): a resume at another
    # world size turns batches_in_epoch into clips with them, and names a changed global batch
    micro_batch: int = 0
    global_batch: int = 0
    tp_size: int = 1  # tensor-parallel size (1 in tags written before it was recorded)
    # global batches of ``epoch`` trained (-1 in tags written before it was recorded): the data position a
    # resume continues from at any topology (train.batch.resume_micro_batch)
    global_batches_in_epoch: int = -1


def same_topology(meta: CheckpointMeta, ctx: ParallelContext) -> bool:
    """Whether DeepSpeed's own per-rank files fit this run (its ZeRO partitions and expert slots do not
    carry over to another world size, ``ep_size`` or ``tp_size``)."""
    return (meta.world_size, meta.ep_size, meta.tp_size) == (ctx.world_size, ctx.ep_size, ctx.tp_size)


def tag_for_step(step: int) -> str:
    return f"step_{step:08d}"


def read_meta(tag_dir: Path) -> Optional[CheckpointMeta]:
    try:
        return CheckpointMeta(**json.loads((tag_dir / META_FILE).read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError, UnicodeDecodeError):
        return None


def tag_file_records(tag_dir: Path) -> dict[str, dict]:
    """Size and SHA-256 of every file of a tag (the metadata file aside)."""
    return {str(path.relative_to(tag_dir)): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(tag_dir.rglob("*")) if path.is_file() and path.name != META_FILE}


def verify_tag(tag_dir: Path, meta: CheckpointMeta) -> Optional[str]:
    """None if every recorded file is there with its size and checksum, else what is wrong."""
    for name, record in meta.files.items():
        path = tag_dir / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != record["bytes"]:
            return f"{name} has {size} bytes, {record['bytes']} were written (truncated or overwritten)"
    for name, record in meta.files.items():  # sizes first: cheap, and what a killed flush leaves
        if file_sha256(tag_dir / name) != record["sha256"]:
            return f"{name} does not match its checksum (corrupt)"
    return None


def complete_tags(ckpt_root: Path) -> list[str]:
    """Complete checkpoint tags, oldest first."""
    if not ckpt_root.is_dir():
        return []
    tags = [p.name for p in ckpt_root.iterdir() if TAG_PATTERN.match(p.name) and read_meta(p) is not None]
    return sorted(tags)


def newest_complete(ckpt_root: Path) -> Optional[CheckpointMeta]:
    """The tag ``latest`` names if it is complete, else the newest complete tag (a kill between the
    metadata and the pointer leaves a newer complete tag than ``latest``). Not verified."""
    tags = complete_tags(ckpt_root)
    if not tags:
        return None
    pointer = ckpt_root / LATEST_FILE
    named = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    newest = tags[-1]
    if named in tags and named >= newest:
        newest = named
    return read_meta(ckpt_root / newest)


def choose_resume_tag(ckpt_root: Path, log: Callable[[str], None]) -> Optional[CheckpointMeta]:
    """The newest complete tag whose files verify; every tag passed over is logged with its reason, and
    so is starting from scratch in a folder that holds checkpoints."""
    if not ckpt_root.is_dir():
        return None
    candidates = sorted((p.name for p in ckpt_root.iterdir() if TAG_PATTERN.match(p.name)), reverse=True)
    skipped = []
    for tag in candidates:
        meta = read_meta(ckpt_root / tag)
        if meta is None:
            skipped.append(f"{tag}: incomplete (no readable {META_FILE}; the run that wrote it was stopped)")
            continue
        problem = verify_tag(ckpt_root / tag, meta)
        if problem is None:
            for line in skipped:
                log(f"resume: skipped checkpoint {line}")
            return meta
        skipped.append(f"{tag}: {problem}")
    if skipped:
        log(f"resume: no usable checkpoint under {ckpt_root}; starting from step 0. Passed over: "
            + "; ".join(skipped))
    return None


class CheckpointManager:
    def __init__(self, output_dir: str | Path, ctx: ParallelContext, keep: int, config: dict,
                 log: Callable[[str], None] = print, micro_batch: int = 0, global_batch: int = 0):
        self.root = Path(output_dir) / "checkpoints"
        self.ctx = ctx
        self.keep = keep
        self.config = config
        self.log = log
        self.micro_batch, self.global_batch = micro_batch, global_batch
        # after ``resume``: whether the optimizer state was restored (False: it starts fresh)
        self.optimizer_restored = False

    def save(self, engine, step: int, epoch: int, batches_in_epoch: int, global_batches_in_epoch: int = -1) -> Path:
        """Collective: every rank calls it. The data position: ``epoch`` and the global batches of it
        trained (``batches_in_epoch``: the same as this rank's micro-batches)."""
        tag = tag_for_step(step)
        tag_dir = self.root / tag
        meta = CheckpointMeta(tag=tag, step=step, epoch=epoch, batches_in_epoch=batches_in_epoch,
                              world_size=self.ctx.world_size, ep_size=self.ctx.ep_size, config=self.config,
                              micro_batch=self.micro_batch, global_batch=self.global_batch, tp_size=self.ctx.tp_size,
                              global_batches_in_epoch=global_batches_in_epoch)
        previous = read_meta(tag_dir)
        if previous is not None and same_topology(previous, self.ctx):
            # the same step saved again (epoch end after a save_every_steps save): same weights and
            # optimizer state, so only the data position changes; the complete tag is never deleted
            if self.ctx.rank == 0:
                meta.files = previous.files
                self._commit(tag_dir, meta)
            dist.barrier()
            return tag_dir
        if self.ctx.rank == 0 and tag_dir.exists():
            shutil.rmtree(tag_dir)  # a half-written tag of the same step from a killed run
        dist.barrier()
        with translate_out_of_space(tag_dir):
            engine.save_checkpoint(str(self.root), tag=tag, client_state={"vidprism": asdict(meta)},
                                   save_latest=False)
            save_expert_files(engine.module, self.ctx, tag_dir)
            save_optimizer_state(engine, self.ctx, tag_dir)  # collective: assembles each parameter
        dist.barrier()  # every rank's files are on disk before the tag is marked complete
        if self.ctx.rank == 0:
            meta.files = tag_file_records(tag_dir)
            self._commit(tag_dir, meta)
        dist.barrier()
        return tag_dir

    def _commit(self, tag_dir: Path, meta: CheckpointMeta) -> None:
        atomic_write_text(tag_dir / META_FILE, json.dumps(asdict(meta), indent=1))
        atomic_write_text(self.root / LATEST_FILE, meta.tag + "\n")
        self._prune()

    def _prune(self) -> None:
        # only complete tags count, and the newest `keep` of them (the one just written included) stay
        tags = complete_tags(self.root)
        for old in tags[:-self.keep]:
            shutil.rmtree(self.root / old, ignore_errors=True)

    def choose(self) -> Optional[CheckpointMeta]:
        """Collective: rank 0 verifies the tags, every rank gets its choice."""
        choice = [choose_resume_tag(self.root, self.log) if self.ctx.rank == 0 else None]
        if self.ctx.world_size > 1:
            dist.broadcast_object_list(choice, src=0)
        return choice[0]

    def resume(self, engine) -> Optional[CheckpointMeta]:
        """Load the newest verified checkpoint into ``engine``; None when there is none."""
        meta = self.choose()
        if meta is None:
            return None
        if same_topology(meta, self.ctx):
            path, _ = engine.load_checkpoint(str(self.root), tag=meta.tag, load_optimizer_states=True,
                                             load_lr_scheduler_states=True)
            if path is None:
                raise RuntimeError(f"DeepSpeed could not load checkpoint {self.root / meta.tag}")
            self.optimizer_restored = True
        else:
            load_module_weights(engine.module, self.root / meta.tag, self.ctx)
            self.optimizer_restored = load_optimizer_state(engine, self.ctx, self.root / meta.tag) is not None
        return meta
