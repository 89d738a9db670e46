"""The Trainer: the model built, parallelised and wrapped with DeepSpeed, trained with checkpoints,
logging and pre-emption, and evaluated.

``Trainer.fit`` is a loop over ``train_step`` (one micro-batch forward and backward; DeepSpeed steps the
optimizer every ``grad_accum`` of them) and ``after_step`` (after each optimizer step: history, logging,
checkpoints, stop requests). The batch arithmetic is ``vidprism_ds.train.batch``: with
``train.global_batch`` set the same recipe takes the same optimizer steps on any world size.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Callable, Optional

import deepspeed
import torch

from vidprism_ds.analysis.eval_report import write_eval_report
from vidprism_ds.analysis.eval_result import EvalResult
from vidprism_ds.config.io import to_dict
from vidprism_ds.config.schema import ConfigError, ExperimentConfig
from vidprism_ds.data.loaders import build_eval_loader, build_train_loader, eval_batch_videos
from vidprism_ds.data.presets import load_class_names
from vidprism_ds.model.backbone import backbone_identity, get_tokenizer
from vidprism_ds.model.build import build_experiment_model
from vidprism_ds.model.classifier_slicing import load_init_weights
from vidprism_ds.model.text_embeddings import class_text_embeddings
from vidprism_ds.model.video_model import has_experts
from vidprism_ds.parallel import ParallelContext, find_expert_head, init_expert_parallel, parallelize_model
from vidprism_ds.parallel.dims import ParallelDims
from vidprism_ds.train import checkpoint_engine, optim
from vidprism_ds.train.batch import lr_scale, plan_batch, resume_micro_batch
from vidprism_ds.train.checkpoint import CheckpointManager, CheckpointMeta, complete_tags, same_topology
from vidprism_ds.train.compile import compile_enabled, compile_model, step_functions, use_compile_cache
from vidprism_ds.train.device_batches import DeviceBatches, batch_to_device
from vidprism_ds.train.distributed import init_distributed, rank_zero_first
from vidprism_ds.train.ds_config import DeepSpeedSettings, resolve_ds_config, training_dtype
from vidprism_ds.train.evaluate import evaluate
from vidprism_ds.train.export import export_model
from vidprism_ds.train.loader_pace import LoaderPace, cores_per_process, timed
from vidprism_ds.train.loop_state import FINISHED, STOPPED, EpochDamage, LoopState, RunResult
from vidprism_ds.train.memory import report_and_check
from vidprism_ds.train.reporting import (Reporter, expert_specialisation, format_eval_line, format_train_line,
                                         zero_loss_terms)
from vidprism_ds.train.signals import StopRequest
from vidprism_ds.train.startup_checks import check_inputs, limit_cpu_threads, unused_ep_size_warning


class Trainer:
    def __init__(self, cfg: ExperimentConfig, ds_config: dict, eval_class_names: Optional[list[str]] = None):
        self.cfg = cfg
        self.class_names = load_class_names(cfg.data.dataset, cfg.data.labels)
        self.num_classes = cfg.model.num_classes or len(self.class_names)
        self.eval_class_names = eval_class_names
        check_inputs(cfg, self.num_classes, eval_class_names)  # in seconds, before any process group
        self.rank, self.world_size, self.device = init_distributed()
        # the ranks of one tensor-parallel group read the same batch: the data-parallel size and rank are
        # what the batch arithmetic and the loaders use (docs/parallel.md#tensor-parallelism)
        self.dims = ParallelDims(self.world_size, cfg.parallel.tp_size, cfg.parallel.ep_size)
        # the batch arithmetic needs the data-parallel size, and is checked before the model is built
        self.batch = plan_batch(cfg.train, self.dims)
        self.lr_scale = lr_scale(cfg.train, self.batch.global_batch)
        self.on_gpu = self.device.type == "cuda"
        self.dtype = training_dtype(cfg.train.precision, self.on_gpu)
        limit_cpu_threads(self.world_size, self.on_gpu)
        self.output_dir = Path(cfg.train.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.train.seed)

        self._build_model(eval_class_names)
        self._build_train_loader()
        self._build_engine(ds_config)
        self.checkpoints = CheckpointManager(self.output_dir, self.ctx, cfg.train.keep_checkpoints, to_dict(cfg),
                                             log=self.log_line, micro_batch=self.batch.micro_batch,
                                             global_batch=self.batch.global_batch)
        self.reporter = Reporter(cfg.logging, self.output_dir, self.rank, to_dict(cfg), self.output_dir.name)

    @property
    def dp_size(self) -> int:
        return self.dims.dp_size

    @property
    def dp_rank(self) -> int:
        return self.dims.dp_rank(self.rank)

    def log_line(self, text: str) -> None:
        if self.rank == 0:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------------- set-up

    def _build_model(self, eval_class_names: Optional[list[str]]) -> None:
        """The model (with train.init_from), the class text embeddings it needs, expert parallelism."""
        cfg = self.cfg
        built = build_experiment_model(cfg, self.num_classes)
        self.model = built.model
        if cfg.train.init_from:
            load_init_weights(self.model, cfg.train.init_from, cfg.train.init_class_map)
        self.text_cd = None
        if cfg.model.loss.contrastive > 0 or eval_class_names is not None:
            # the text tower runs on the device: 710 classes x 28 prompts take minutes on a CPU core
            built.clip.to(self.device)
            self.text_cd = self._text_embeddings(built.clip, self.class_names)
        self.zero_shot_text_cd = (self._text_embeddings(built.clip, eval_class_names)
                                  if eval_class_names is not None else None)
        del built  # the text tower is no longer needed

        self.ctx: ParallelContext = init_expert_parallel(self.dims.ep_size, self.dims.tp_size)
        parallelize_model(self.model, self.ctx)
        self.has_experts = has_experts(cfg.model)
        warning = unused_ep_size_warning(cfg.parallel.ep_size, self.has_experts, cfg.model.variant)
        if warning:
            self.log_line(warning)
        self.model.to(self.device)

    def _build_train_loader(self) -> None:
        """The loader, and the epoch in optimizer steps of the global batch (the schedule's unit)."""
        cfg = self.cfg
        self.train_loader, self.epoch_damage = None, EpochDamage(cfg.data.max_bad_samples)
        self.loader_pace = LoaderPace(cfg.data.num_workers, cores_per_process())
        if not cfg.train.eval_only:
            # the global order's batches of train.global_batch clips, this data-parallel rank's slices of them
            self.train_loader = build_train_loader(cfg.data, None, cfg.train.micro_batch, self.dp_rank,
                                                   self.dp_size, seed=cfg.train.seed, num_classes=self.num_classes,
                                                   global_batch=self.batch.global_batch)
            self.train_loader.pin_memory = self.on_gpu
        self.steps_per_epoch = self.batch.steps_per_epoch(len(self.train_loader)) if self.train_loader else 0
        if self.train_loader is not None and not self.steps_per_epoch:
            # otherwise every epoch ends before its first optimizer step and the run "finishes" untrained
            raise ConfigError(f"train.global_batch: an epoch of data.train_shards gives each of the {self.dp_size} "
                              f"process(es) {len(self.train_loader)} micro-batch(es) of {cfg.train.micro_batch} clips, "
                              f"fewer than the {self.batch.grad_accum} one optimizer step of {self.batch.global_batch} "
                              "clips accumulates: lower train.global_batch or add training videos")
        # the micro-batches of an epoch that make whole optimizer steps (batch.py: the rest are not trained on)
        self.batches_per_epoch = self.steps_per_epoch * self.batch.grad_accum
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        if cfg.train.max_steps:
            self.total_steps = min(self.total_steps, cfg.train.max_steps) if self.total_steps else cfg.train.max_steps
        if self.train_loader is not None:
            self.log_line(f"{self.batch.describe()}: {self.steps_per_epoch} optimizer steps an epoch, "
                          f"{self.total_steps} in all; lr x {self.lr_scale:g} (train.lr_scaling={cfg.train.lr_scaling})")

    def _build_engine(self, ds_config: dict) -> None:
        """The DeepSpeed config, the memory check, the optimizer and schedule, DeepSpeed's engine."""
        cfg = self.cfg
        self.ds_config = resolve_ds_config(ds_config, cfg, self.dims, self.on_gpu, self.has_experts)
        # before DeepSpeed allocates anything: a configuration that cannot fit fails here, naming the knob
        self.memory_estimate = None
        if not cfg.train.eval_only:
            self.memory_estimate = report_and_check(self.model, cfg, self.ds_config, self.dims, self.device,
                                                    self.dtype, log=self.log_line)
        # train.compile: in place and lazy, traced at the first forward; the first step reports its time
        self.compile_cache, self.compile_reported = None, False
        if compile_enabled(cfg.train.compile, self.on_gpu):
            self.compile_cache = use_compile_cache(
                Path(cfg.train.compile_cache_dir or self.output_dir / "compile_cache"))
            compile_model(self.model)
        self.step_fns = step_functions(self.compile_cache is not None)

        optim_cfg = dataclasses.replace(cfg.optim, lr=cfg.optim.lr * self.lr_scale)
        groups = optim.param_groups(self.model, optim_cfg)
        optimizer = optim.build_optimizer(groups, optim_cfg, fused=self.on_gpu,
                                          cpu_offload=DeepSpeedSettings.read(self.ds_config).offload_optimizer)
        scheduler = optim.build_scheduler(optimizer, optim_cfg, max(1, self.total_steps))
        # mpu (tensor parallelism only): ZeRO partitions and averages over the data-parallel group
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=self.model, optimizer=optimizer, lr_scheduler=scheduler, config=self.ds_config, mpu=self.ctx.mpu)
        checkpoint_engine.install(self.engine)  # checkpoint files are loaded with weights_only=True

    def _text_embeddings(self, clip_model, class_names: list[str]) -> torch.Tensor:
        key = backbone_identity(self.cfg.model.backbone, seed=self.cfg.train.seed)
        tokenizer = get_tokenizer(self.cfg.model.backbone.arch)
        text = rank_zero_first(self.rank, lambda: class_text_embeddings(
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
        # the data position: the next global batch of the epoch, at any topology (batch.resume_micro_batch)
        skip = resume_micro_batch(meta, self.batch)
        if not same_topology(meta, self.ctx):
            # DeepSpeed's scheduler state is not loaded: the schedule continues from the step
            for _ in range(meta.step):
                self.scheduler.step()
            kept = ("weights and optimizer state (fp32 masters, Adam moments, step count)"
                    if self.checkpoints.optimizer_restored else
                    "weights (the tag has no consolidated optimizer state: it starts fresh)")
            self.reporter.line(f"resumed {kept} from {meta.tag} (world {meta.world_size}, ep {meta.ep_size}, "
                               f"tp {meta.tp_size}) at world {self.world_size}, ep {self.ctx.ep_size}, "
                               f"tp {self.ctx.tp_size}")
        else:
            self.reporter.line(f"resumed from {meta.tag}: step {meta.step}, epoch {meta.epoch}")
        if meta.global_batch and meta.global_batch != self.batch.global_batch:
            self.reporter.line(f"warning: {meta.tag} was trained with global batch {meta.global_batch}, this run's is "
                               f"{self.batch.global_batch}: its step count and schedule differ from the checkpoint's "
                               f"run (train.global_batch={meta.global_batch} keeps them)")
        if self.steps_per_epoch and skip >= self.batches_per_epoch:
            return meta.step, meta.epoch + 1, 0, meta.step
        return meta.step, meta.epoch, skip, meta.step

    def to_device(self, batch: dict) -> dict:
        """A loader batch on the device (``device_batches.batch_to_device``); device decode counts the
        clips it replaces against data.max_bad_samples."""
        return batch_to_device(batch, self.device, self.cfg.data.image_size, self.epoch_damage.decode_log)

    def _forward_loss(self, batch: dict):
        """``batch``: from ``to_device``. Dense and multirate clips carry frame times; segment clips do not,
        and the model then runs the paper's path."""
        frames = self.step_fns.normalise(batch["frames_u8"], self.dtype)
        output = self.engine(frames, frame_times=batch["frame_times"])
        losses = self.step_fns.combine_losses(self.cfg.model.loss, output, batch["labels"], self.text_cd)
        return output, losses

    def _flush_history(self, state: LoopState) -> None:
        for entry in state.pending.flush():
            if "damaged_samples" in entry:  # an epoch's last step (after_step)
                entry["damaged_samples"] = int(entry["damaged_samples"])
                self.reporter.log({"damaged_samples": entry["damaged_samples"]}, entry["step"])
            state.result.history.append(entry)
            self.reporter.record(entry)

    def _save(self, state: LoopState, epoch: int, batches_in_epoch: int) -> None:
        # the history file must hold every step up to the checkpoint: a resumed run continues after it
        self._flush_history(state)
        self.checkpoints.save(self.engine, state.step, epoch, batches_in_epoch,
                              global_batches_in_epoch=batches_in_epoch // self.batch.grad_accum)

    def train_step(self, batch: dict):
        """One micro-batch (from ``to_device``): forward, backward, and DeepSpeed's step (the optimizer steps,
        and the schedule with it, on every ``grad_accum``-th micro-batch; the others only accumulate)."""
        started = time.perf_counter()
        output, losses = self._forward_loss(batch)
        self.engine.backward(losses.total)
        self.engine.step()
        if self.compile_cache is not None and not self.compile_reported:
            self.compile_reported = True  # the first step traces and compiles every graph (or loads the cache)
            self.log_line(f"train.compile: first step {time.perf_counter() - started:.1f} s, compiled graphs "
                          f"cached in {self.compile_cache}")
        return output, losses

    def _log_step(self, state: LoopState, output, lr: float) -> None:
        """The console line and wandb metrics of a logging step (the one host read of the loss terms)."""
        self._flush_history(state)
        terms = {k: v for k, v in state.result.history[-1].items()
                 if k not in ("step", "epoch", "lr", "damaged_samples")}
        clips_per_s = state.window_clips / max(time.perf_counter() - state.window_start, 1e-9)
        weights = output.expert_weights.detach().float().mean(dim=0).tolist()
        spec = expert_specialisation(output.expert_means)
        self.reporter.line(format_train_line(state.step, state.epoch, clips_per_s, lr, terms, weights, spec,
                                             omit=zero_loss_terms(self.cfg.model)))
        self.reporter.log({**terms, "lr": lr, "clips_per_s": clips_per_s, "expert_similarity": spec}, state.step)
        state.window_start, state.window_clips = time.perf_counter(), 0

    def after_step(self, state: LoopState, output, losses) -> Optional[str]:
        """After optimizer step ``state.step``: its history entry, logging, checkpoints and the stop
        agreement. Returns STOPPED or FINISHED to end the epoch's loop, None to carry on."""
        train = self.cfg.train
        lr = self.scheduler.get_last_lr()[-1]
        # the step's global batch mean (every micro-batch of every data-parallel rank), not one micro-batch's
        terms = state.step_loss.global_mean(self.dp_size, self.ctx.dp_group)
        if state.batches_in_epoch == self.batches_per_epoch or self._max_steps_reached(state.step):
            # the epoch's last step on every rank (equal batch counts): the sum is in lockstep, and read later
            terms["damaged_samples"] = self.epoch_damage.total(self.device, self.dp_size, self.ctx.dp_group)
        state.pending.add({"step": state.step, "epoch": state.epoch, "lr": lr}, terms)
        if state.on_step is not None:
            state.on_step(state.step)
        if state.step % max(1, self.cfg.logging.log_every_steps) == 0:
            self._log_step(state, output, lr)
        done = self._max_steps_reached(state.step)
        if train.save_every_steps and state.step % train.save_every_steps == 0 and not done:
            self._save(state, state.epoch, state.batches_in_epoch)
        # every rank reaches the same steps, so the agreement (a collective) stays in lockstep
        if state.step % train.stop_check_every == 0 and state.stop.agreed(self.world_size, self.device):
            self._save(state, state.epoch, state.batches_in_epoch)
            self.reporter.line(f"stop requested (signal {state.stop.signum or 'on another rank'}): "
                               f"checkpoint saved at step {state.step}")
            return STOPPED
        if done:
            self._save(state, state.epoch, state.batches_in_epoch)
            return FINISHED
        return None

    def _train_epoch(self, state: LoopState, skip: int) -> Optional[str]:
        """The epoch ``state.epoch`` from micro-batch ``skip`` on; what ``after_step`` ended it with."""
        # the loader starts at micro-batch ``skip``: the batches before it are neither read nor decoded
        self.train_loader.set_epoch(state.epoch, start_batch=skip)
        self.engine.train()
        self.epoch_damage.start()
        state.window_start, state.window_clips = time.perf_counter(), 0
        # each batch goes to the device (and is decoded there) on a side stream while the step before it runs
        batches = DeviceBatches(itertools.islice(self.train_loader, self.batches_per_epoch - skip), self.to_device,
                                self.device)
        for batch_index, (batch, wait_s) in enumerate(timed(batches), start=skip):
            got = time.perf_counter()
            output, losses = self.train_step(batch)
            state.step_loss.add({**losses.terms, "total": losses.total})
            self.epoch_damage.add(batch["host"])  # after the step: device decode counts the clips it replaced
            state.window_clips += batch["labels"].shape[0] * self.dp_size
            state.batches_in_epoch = batch_index + 1
            self._pace(wait_s, time.perf_counter() - got, batch)
            if state.batches_in_epoch % self.batch.grad_accum:
                continue  # DeepSpeed accumulated; the optimizer steps every grad_accum micro-batches
            state.step += 1
            outcome = self.after_step(state, output, losses)
            if outcome is not None:
                return outcome
        return None

    def _pace(self, wait_s: float, step_s: float, batch: dict) -> None:
        """Whether the loader keeps up (``loader_pace``): one warning a run when the step waits for data."""
        self.loader_pace.add(wait_s, step_s, batch["host"].get("cpu_seconds"), batch["labels"].shape[0])
        warning = self.loader_pace.check()
        if warning:
            self.log_line(warning)

    def _max_steps_reached(self, step: int) -> bool:
        return bool(self.cfg.train.max_steps) and step >= self.cfg.train.max_steps

    def fit(self, on_step: Optional[Callable[[int], None]] = None) -> RunResult:
        """Train from the newest checkpoint (or the start) to the end or a stop signal.

        ``on_step(step)`` runs after each optimizer step (benchmarks time steps with it).

        Host syncs of ours per optimizer step: none between logging steps (loss terms stay on the device
        in ``StepLossLog``); one read per ``logging.log_every_steps``; one small all-reduce and read per
        ``train.stop_check_every`` steps for the pre-emption agreement.
        """
        train = self.cfg.train
        state = LoopState(result=RunResult(output_dir=self.output_dir), stop=StopRequest(), on_step=on_step)
        state.step, start_epoch, skip, state.result.resumed_from = self._resume()
        try:
            for state.epoch in range(start_epoch, train.epochs):
                if self._max_steps_reached(state.step):
                    break
                outcome = self._train_epoch(state, skip)
                if outcome == STOPPED:
                    state.result.stopped_by_signal = True
                    break
                skip = 0
                if self._max_steps_reached(state.step):
                    break
                self._save(state, state.epoch + 1, 0)  # epoch end: the next starts clean
                if train.eval_every_epochs and (state.epoch + 1) % train.eval_every_epochs == 0 and (
                        state.epoch + 1) < train.epochs:
                    self.run_eval(state.step, tag=f"epoch_{state.epoch + 1:03d}")
        finally:
            state.stop.restore()
            self._flush_history(state)
        state.result.step = state.step
        return state.result

    # ----------------------------------------------------------------------------------------- evaluation

    def run_eval(self, step: int, tag: str, zero_shot: bool = False) -> tuple[EvalResult, Optional[list[float]]]:
        cfg = self.cfg
        # videos per batch bounded in bytes (data.eval_chunk_mib): a 4 x 3-view batch of 32-frame videos
        # is ~58 MB a video, and workers x prefetch batches of it sit in host memory
        text = self.zero_shot_text_cd if zero_shot else None
        num_classes = text.shape[0] if text is not None else self.num_classes
        loader = build_eval_loader(cfg.data, None, eval_batch_videos(cfg.data, cfg.train.micro_batch), self.dp_rank,
                                   self.dp_size, num_classes=num_classes,
                                   class_names=self.eval_class_names if zero_shot else None)
        loader.pin_memory = self.on_gpu
        weights_sum = []

        def record_weights(module, args, output):
            weights_sum.append(output.expert_weights.detach().float().mean(dim=0))

        head = find_expert_head(self.engine.module) or self.engine.module.head
        hook = head.register_forward_hook(record_weights)
        try:
            result = evaluate(self.engine, loader, num_classes, self.device, self.dtype, self.dp_size, text,
                              chunk=cfg.train.micro_batch, progress=self.rank == 0, group=self.ctx.dp_group)
        finally:
            hook.remove()
        expert_weights = torch.stack(weights_sum).mean(dim=0).tolist() if weights_sum else None
        if self.rank == 0:
            names = self.class_names if text is None else None
            write_eval_report(result, names or [], self.output_dir / "eval" / tag)
        self.reporter.line(format_eval_line(tag, result.accuracy_by_k, result.samples, num_classes))
        self.reporter.log(result.as_dict(), step, prefix="eval")
        return result, expert_weights

    def export(self, path: str | Path) -> Optional[Path]:
        """Consolidated fp32 state dict (single-process names) + the config next to it (rank 0)."""
        return export_model(self.engine.module, self.ctx, self.cfg, path)
