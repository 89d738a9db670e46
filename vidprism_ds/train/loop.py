"""One training run: build, parallelise, wrap with DeepSpeed, train with checkpoints, evaluate.

``run_experiment(cfg, ds_config)`` is the in-process API (train.py, the demo, bench/temporal.py and the
tests call it). It initialises torch.distributed from whatever launcher started the process (a plain
process is a world of one) and can be called several times in one process.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import deepspeed
import torch
import torch.distributed as dist

from vidprism_ds.config.io import to_dict
from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.data.loaders import build_eval_loader, build_train_loader, check_shards_at_start, eval_batch_videos
from vidprism_ds.data.device_decode import decode_clips, uses_device_decode
from vidprism_ds.data.transforms import frames_to_device, normalise
from vidprism_ds.data.presets import FRESH_CLASSIFIER, load_class_names
from vidprism_ds.model.backbone import backbone_identity, get_tokenizer
from vidprism_ds.model.classifier_slicing import apply_init_class_map, is_classifier_param
from vidprism_ds.model.losses import combine_losses
from vidprism_ds.model.text_embeddings import class_text_embeddings
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.parallel import ParallelContext, find_expert_head, init_expert_parallel, parallelize_model
from vidprism_ds.parallel.checkpoint import consolidated_state_dict
from vidprism_ds.train import optim
from vidprism_ds.train import checkpoint_engine
from vidprism_ds.train.checkpoint import CheckpointManager, CheckpointMeta, complete_tags
from vidprism_ds.train.compile import compile_model
from vidprism_ds.train.ds_config import resolve_ds_config, training_dtype
from vidprism_ds.train.evaluate import EvalResult, evaluate, write_eval_report
from vidprism_ds.train.launch import export_launch_env, resolve_launch
from vidprism_ds.train.memory import report_and_check
from vidprism_ds.train.reporting import Reporter, expert_specialisation, format_train_line
from vidprism_ds.train.signals import StopRequest
from vidprism_ds.train.step_log import StepLossLog
from vidprism_ds.utils.files import atomic_torch_save, atomic_write_text


@dataclass
class RunResult:
    history: list[dict] = field(default_factory=list)  # one entry per optimizer step: step, loss terms, lr
    eval_metrics: Optional[dict] = None
    expert_weights: Optional[list[float]] = None  # mean readout weight per expert over the last eval
    output_dir: Optional[Path] = None
    step: int = 0
    stopped_by_signal: bool = False
    resumed_from: Optional[int] = None


def init_distributed() -> tuple[int, int, torch.device]:
    """Initialise the default process group from the launcher's environment (once per process)."""
    if not dist.is_initialized():
        info = resolve_launch(os.environ)
        export_launch_env(info)
        if torch.cuda.is_available():
            # before the group exists: NCCL binds its communicator (and barrier()) to the current device,
            # and otherwise guesses it from the global rank (seen on the H200 run: "Guessing device ID")
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


def _rank_zero_first(rank: int, fn):
    """Run ``fn`` on rank 0, then on the others (they find its cache)."""
    if rank == 0:
        value = fn()
        dist.barrier()
    else:
        dist.barrier()
        value = fn()
    return value


def _load_init_weights(model, cfg: ExperimentConfig) -> None:
    state = torch.load(cfg.train.init_from, map_location="cpu", weights_only=True)
    state = apply_init_class_map(state, cfg.train.init_class_map)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if cfg.train.init_class_map == FRESH_CLASSIFIER:  # the new classifier is meant to be missing
        missing = [key for key in missing if not is_classifier_param(key)]
    if missing or unexpected:
        raise RuntimeError(f"train.init_from {cfg.train.init_from}: does not match the model (missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]})")


def _check_inputs(cfg: ExperimentConfig, num_classes: int, eval_class_names: Optional[list[str]]) -> None:
    """What the run reads, checked before anything slow, as one ConfigError naming the key or file: the
    decode device, and the shard folders, manifests and class lists (the evaluation loader is otherwise
    built, and checked, only at the first evaluation, possibly hours in)."""
    if cfg.data.decode_device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("data.decode_device: cuda decodes JPEG frames on the GPU, and this process has none; "
                          "use cpu")
    try:
        check_shards_at_start(cfg.data, num_classes, train=not cfg.train.eval_only, eval_class_names=eval_class_names)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data: {err}") from None


class Trainer:
    def __init__(self, cfg: ExperimentConfig, ds_config: dict, eval_class_names: Optional[list[str]] = None):
        self.cfg = cfg
        self.class_names = load_class_names(cfg.data.dataset, cfg.data.labels)
        self.num_classes = cfg.model.num_classes or len(self.class_names)
        self.eval_class_names = eval_class_names
        _check_inputs(cfg, self.num_classes, eval_class_names)  # in seconds, before any process group
        self.rank, self.world_size, self.device = init_distributed()
        self.on_gpu = self.device.type == "cuda"
        self.dtype = training_dtype(cfg.train.precision, self.on_gpu)
        if not self.on_gpu and "OMP_NUM_THREADS" not in os.environ:
            # Processes sharing the cores: oversubscribed threads only add scheduling overhead.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        self.output_dir = Path(cfg.train.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.train.seed)

        built = build_video_model(cfg.model, self.num_classes, cfg.data.num_frames, seed=cfg.train.seed)
        self.model = built.model
        if cfg.train.init_from:
            _load_init_weights(self.model, cfg)
        self.text_cd = None
        if cfg.model.loss.contrastive > 0 or eval_class_names is not None:
            # the text tower runs on the device: 710 classes x 28 prompts take minutes on a CPU core
            built.clip.to(self.device)
            self.text_cd = self._text_embeddings(built.clip, self.class_names)
        self.zero_shot_text_cd = (self._text_embeddings(built.clip, eval_class_names)
                                  if eval_class_names is not None else None)
        del built  # the text tower is no longer needed

        self.ctx: ParallelContext = init_expert_parallel(cfg.parallel.ep_size)
        self.has_experts = parallelize_model(self.model, self.ctx) is not None
        self.model.to(self.device)

        self.train_loader = None
        if not cfg.train.eval_only:
            self.train_loader = build_train_loader(cfg.data, None, cfg.train.micro_batch, self.rank,
                                                   self.world_size, seed=cfg.train.seed, num_classes=self.num_classes)
            self.train_loader.pin_memory = self.on_gpu
        self.steps_per_epoch = (len(self.train_loader) // cfg.train.grad_accum) if self.train_loader else 0
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps) if self.total_steps else cfg.train.max_steps

        self.ds_config = resolve_ds_config(ds_config, cfg, self.world_size, self.on_gpu, self.has_experts)
        # before DeepSpeed allocates anything: a configuration that cannot fit fails here, naming the knob
        self.memory_estimate = None
        if not cfg.train.eval_only:
            self.memory_estimate = report_and_check(self.model, cfg, self.ds_config, self.world_size,
                                                    self.ctx.ep_size, self.device, self.dtype, log=self.log_line)
        if cfg.train.compile:
            compile_model(self.model)  # in place and lazy: traced at the first forward

        groups = optim.param_groups(self.model, cfg.optim)
        optimizer = optim.build_optimizer(groups, cfg.optim, cpu_offload=optim.uses_cpu_offload(ds_config))
        scheduler = optim.build_scheduler(optimizer, cfg.optim, max(1, self.total_steps))
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model, optimizer=optimizer, lr_scheduler=scheduler, config=self.ds_config)
        checkpoint_engine.install(self.engine)  # checkpoint files are loaded with weights_only=True
        self.checkpoints = CheckpointManager(self.output_dir, self.ctx, cfg.train.keep_checkpoints, to_dict(cfg),
                                             log=self.log_line)
        self.reporter = Reporter(cfg.logging, self.output_dir, self.rank, to_dict(cfg), self.output_dir.name)

    def log_line(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    def _text_embeddings(self, clip_model, class_names: list[str]) -> torch.Tensor:
        key = backbone_identity(self.cfg.model.backbone, seed=self.cfg.train.seed)
        tokenizer = get_tokenizer(self.cfg.model.backbone.arch)
        text = _rank_zero_first(self.rank, lambda: class_text_embeddings(
            clip_model, tokenizer, class_names, self.cfg.model.text_cache_dir, key))
        return text.to(self.device)

    # ----------------------------------------------------------------------------------------- training

    def _resume(self) -> tuple[int, int, int, Optional[int]]:
        """(step, epoch, batches to skip in that epoch, resumed step or None)."""
        if not self.cfg.train.resume:
            if complete_tags(self.checkpoints.root):
                self.log_line(f"train.resume=false: starting from step 0 although {self.checkpoints.root} holds "
                              "checkpoints (they are kept until newer ones replace them)")
            return 0, 0, 0, None
        meta: Optional[CheckpointMeta] = self.checkpoints.resume(self.engine)
        if meta is None:
            return 0, 0, 0, None
        skip = meta.batches_in_epoch
        if meta.world_size != self.world_size or meta.ep_size != self.ctx.ep_size:
            # Fresh optimizer state; the schedule continues from the step; the data position is
            # scaled to the new world size (the same number of samples seen in this epoch).
            for _ in range(meta.step):
                self.scheduler.step()
            skip = meta.batches_in_epoch * meta.world_size // self.world_size
            self.reporter.line(f"resumed weights from {meta.tag} (world {meta.world_size}, ep {meta.ep_size}); "
                               f"optimizer state starts fresh at world {self.world_size}, ep {self.ctx.ep_size}")
        else:
            self.reporter.line(f"resumed from {meta.tag}: step {meta.step}, epoch {meta.epoch}")
        if self.steps_per_epoch and skip >= len(self.train_loader):
            return meta.step, meta.epoch + 1, 0, meta.step
        return meta.step, meta.epoch, skip, meta.step

    def _frames(self, batch: dict) -> torch.Tensor:
        """The batch's clips, CLIP-normalised in the training dtype on the device."""
        if uses_device_decode(batch):
            frames_u8 = decode_clips(batch, self.device, self.cfg.data.image_size)
            return normalise(frames_u8, self.dtype)
        return frames_to_device(batch["frames"], self.device, self.dtype)

    def _forward_loss(self, batch: dict):
        frames = self._frames(batch)
        labels = batch["labels"].to(self.device, non_blocking=True)
        output = self.engine(frames)
        losses = combine_losses(self.cfg.model.loss, output, labels, self.text_cd)
        return output, losses

    def _flush_history(self, pending: StepLossLog, result: RunResult) -> None:
        for entry in pending.flush():
            result.history.append(entry)
            self.reporter.record(entry)

    def _save(self, pending: StepLossLog, result: RunResult, step: int, epoch: int, batches_in_epoch: int) -> None:
        # the history file must hold every step up to the checkpoint: a resumed run continues after it
        self._flush_history(pending, result)
        self.checkpoints.save(self.engine, step, epoch, batches_in_epoch)

    def fit(self, on_step: Optional[Callable[[int], None]] = None) -> RunResult:
        """Train from the newest checkpoint (or the start) to the end or a stop signal.

        ``on_step(step)`` runs after each optimizer step (benchmarks time steps with it).

        Host syncs of ours per optimizer step: none between logging steps (loss terms stay on the device
        in ``StepLossLog``); one read per ``logging.log_every_steps``; one small all-reduce and read per
        ``train.stop_check_every`` steps for the pre-emption agreement.
        """
        cfg = self.cfg
        result = RunResult(output_dir=self.output_dir)
        step, start_epoch, skip, result.resumed_from = self._resume()
        stop = StopRequest()
        pending = StepLossLog()
        log_every = max(1, cfg.logging.log_every_steps)
        try:
            for epoch in range(start_epoch, cfg.train.epochs):
                if cfg.train.max_steps and step >= cfg.train.max_steps:
                    break
                self.train_loader.set_epoch(epoch)
                self.engine.train()
                window_start, window_clips = time.perf_counter(), 0
                for batch_index, batch in enumerate(self.train_loader):
                    if batch_index < skip:
                        continue
                    output, losses = self._forward_loss(batch)
                    self.engine.backward(losses.total)
                    self.engine.step()
                    window_clips += batch["labels"].shape[0] * self.world_size
                    if (batch_index + 1) % cfg.train.grad_accum:
                        continue  # DeepSpeed accumulated; the optimizer steps every grad_accum micro-batches
                    step += 1
                    lr = self.scheduler.get_last_lr()[-1]
                    pending.add({"step": step, "epoch": epoch, "lr": lr}, {**losses.terms, "total": losses.total})
                    if on_step is not None:
                        on_step(step)
                    if step % log_every == 0:
                        self._flush_history(pending, result)
                        terms = {k: v for k, v in result.history[-1].items() if k not in ("step", "epoch", "lr")}
                        elapsed = time.perf_counter() - window_start
                        weights = output.expert_weights.detach().float().mean(dim=0).tolist()
                        spec = expert_specialisation(output.expert_means)
                        self.reporter.line(format_train_line(step, epoch, window_clips / max(elapsed, 1e-9), lr,
                                                             terms, weights, spec))
                        self.reporter.log({**terms, "lr": lr, "clips_per_s": window_clips / max(elapsed, 1e-9),
                                           "expert_similarity": spec}, step)
                        window_start, window_clips = time.perf_counter(), 0
                    done = bool(cfg.train.max_steps) and step >= cfg.train.max_steps
                    if cfg.train.save_every_steps and step % cfg.train.save_every_steps == 0 and not done:
                        self._save(pending, result, step, epoch, batch_index + 1)
                    # every rank reaches the same steps, so the agreement (a collective) stays in lockstep
                    if step % cfg.train.stop_check_every == 0 and stop.agreed(self.world_size, self.device):
                        self._save(pending, result, step, epoch, batch_index + 1)
                        self.reporter.line(f"stop requested (signal {stop.signum or 'on another rank'}): "
                                           f"checkpoint saved at step {step}")
                        result.stopped_by_signal = True
                        result.step = step
                        return result
                    if done:
                        self._save(pending, result, step, epoch, batch_index + 1)
                        break
                skip = 0
                if cfg.train.max_steps and step >= cfg.train.max_steps:
                    break
                self._save(pending, result, step, epoch + 1, 0)  # epoch end: the next starts clean
                if cfg.train.eval_every_epochs and (epoch + 1) % cfg.train.eval_every_epochs == 0 and (
                        epoch + 1) < cfg.train.epochs:
                    self.run_eval(step, tag=f"epoch_{epoch + 1:03d}")
        finally:
            stop.restore()
            self._flush_history(pending, result)
        result.step = step
        return result

    # ----------------------------------------------------------------------------------------- evaluation

    def run_eval(self, step: int, tag: str, zero_shot: bool = False) -> tuple[EvalResult, Optional[list[float]]]:
        cfg = self.cfg
        # videos per batch bounded in bytes (data.eval_chunk_mib): a 4 x 3-view batch of 32-frame videos
        # is ~58 MB a video, and workers x prefetch batches of it sit in host memory
        text = self.zero_shot_text_cd if zero_shot else None
        num_classes = text.shape[0] if text is not None else self.num_classes
        loader = build_eval_loader(cfg.data, None, eval_batch_videos(cfg.data, cfg.train.micro_batch), self.rank,
                                   self.world_size, num_classes=num_classes,
                                   class_names=self.eval_class_names if zero_shot else None)
        loader.pin_memory = self.on_gpu
        weights_sum = []

        def record_weights(module, args, output):
            weights_sum.append(output.expert_weights.detach().float().mean(dim=0))

        head = find_expert_head(self.engine.module) or self.engine.module.head
        hook = head.register_forward_hook(record_weights)
        try:
            result = evaluate(self.engine, loader, num_classes, self.device, self.dtype, self.world_size, text,
                              chunk=cfg.train.micro_batch, progress=self.rank == 0)
        finally:
            hook.remove()
        expert_weights = torch.stack(weights_sum).mean(dim=0).tolist() if weights_sum else None
        if self.rank == 0:
            names = self.class_names if text is None else None
            write_eval_report(result, names or [], self.output_dir / "eval" / tag)
        self.reporter.line(f"eval {tag}: top-1 {result.top1:.4f} top-5 {result.top5:.4f} ({result.samples} videos)")
        self.reporter.log(result.as_dict(), step, prefix="eval")
        return result, expert_weights

    def export(self, path: str | Path) -> Optional[Path]:
        """Consolidated fp32 state dict (single-process names) + the config next to it (rank 0)."""
        state = consolidated_state_dict(self.engine.module, self.ctx)
        if self.rank != 0:
            return None
        path = Path(path)
        # atomic: a full disk or a kill leaves the previous export (or none), never a truncated file
        atomic_torch_save(state, path)
        from vidprism_ds.config.io import dump_yaml
        atomic_write_text(path.with_suffix(".yaml"), dump_yaml(self.cfg))
        return path


def run_experiment(cfg: ExperimentConfig, ds_config: dict, export_path: Optional[str] = None,
                   zero_shot_class_names: Optional[list[str]] = None) -> RunResult:
    """Train (unless ``train.eval_only``), evaluate, optionally export. Collective over all ranks."""
    trainer = Trainer(cfg, ds_config, eval_class_names=zero_shot_class_names)
    try:
        if cfg.train.eval_only:
            # train.resume=false evaluates train.init_from even where the run has checkpoints
            resumed = trainer.checkpoints.resume(trainer.engine) if cfg.train.resume else None
            if resumed is None and not cfg.train.init_from:
                raise FileNotFoundError(f"train.eval_only: no complete checkpoint under "
                                        f"{trainer.checkpoints.root} and no train.init_from")
            result = RunResult(output_dir=trainer.output_dir)
        else:
            result = trainer.fit()
        if not result.stopped_by_signal:
            metrics, weights = trainer.run_eval(result.step, tag="final", zero_shot=zero_shot_class_names is not None)
            result.eval_metrics = {**metrics.as_dict(), "per_class_accuracy": metrics.per_class_accuracy}
            result.expert_weights = weights
        if export_path:
            trainer.export(export_path)
        elif cfg.train.export_on_finish and not cfg.train.eval_only and not result.stopped_by_signal:
            # a finished run leaves the file that fine-tuning (train.init_from) and analysis read
            trainer.export(trainer.output_dir / cfg.train.export_on_finish)
        return result
    finally:
        trainer.reporter.finish()


def replace_config(cfg: ExperimentConfig, **sections) -> ExperimentConfig:
    """A copy of ``cfg`` with some sections' fields replaced: replace_config(cfg, train={"output_dir": x})."""
    updated = {}
    for name, fields in sections.items():
        updated[name] = dataclasses.replace(getattr(cfg, name), **fields)
    return dataclasses.replace(cfg, **updated)
