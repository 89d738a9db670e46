"""One command that proves the GPU path on one GPU and prints its figures as one JSON document.

    PYTHONPATH=. python bench/gpu_check.py --official-repo /path/to/VidPrism --out gpu_check.json
    PYTHONPATH=. python bench/gpu_check.py --quick ...     # the shipped preset's figures only (under 4 minutes)
    PYTHONPATH=. python bench/gpu_check.py --tiny          # the same sections on CPU in seconds (tests)

What it runs is the K400 ViT-B/16 preset as shipped: ``train.compile`` and
``model.backbone.grad_checkpointing`` at their defaults (``auto``: compiled on a GPU, the fewest recomputed
blocks that fit), micro-batch 32 x 32 frames, bf16, ZeRO-2, random init.

Sections (each one's failure is recorded under its name with the error, and the exit code is 1):

- ``device``: GPU name, memory, versions, the dense bf16 GEMM rate measured here (8192^3), the
  ceiling MFU is quoted against, and the SDPA kernels the tower's attention launches (``sdpa_kernels``).
- ``shards``: synthetic 224 px videos written as WebDataset shards in the sharder's format.
- ``train``: the project's Trainer as shipped (bf16, ZeRO-2, contrastive loss on, compile and
  checkpointing ``auto``) timed over full optimizer steps on a batch already on the device (the
  compute-only rate): step time, clips/s, MFU (3 x forward FLOPs counted with torch's FlopCounterMode on
  the eager model / step time / the measured GEMM rate), the checkpointing ``auto`` chose, peak memory
  against the start-up estimate, host syncs per step, the first (compiling) step's time.
- ``train_eager``: the same with ``train.compile=false`` (what the step costs without Inductor).
- ``official_loop``: the official repository's training step (``bench/official_loop.py``: its head, DDP,
  fp16 AMP with a GradScaler, no checkpointing) on the same backbone, batch and frames, and
  ``ours_over_official``, the ratio of the two clips/s (``--official-repo``; at half the batch for both
  when the official step does not fit).
- ``head_vs_official``: this project's head and the official VidPrism module, same weights, on the same
  backbone features (B x T x D in the training dtype), forward+backward each; the speed ratio.
- ``loader``: the loader alone: CPU seconds per clip for uint8 and JPEG batches, and the pixel difference
  of the two decodes on the same draws.
- ``fit_cpu_decode`` / ``fit_device_decode``: ``Trainer.fit`` end to end (loader workers + steps, at least
  30 full-batch steps) with ``data.decode_device`` cpu and cuda: clips/s, CPU seconds per clip, and
  ``share_of_compute_rate`` (end-to-end clips/s over the ``train`` section's).
- ``eval``: one multi-view evaluation pass (videos/s).

``--tiny`` switches to the tiny CLIP at 32 px, 8 frames, CPU, a handful of steps: every section's code
runs in the test suite (tests/bench/test_gpu_check.py); its figures mean nothing. ``--quick`` runs
``device``, ``shards``, ``train``, ``official_loop`` and ``fit_device_decode`` with fewer timed steps.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Settings:
    arch: str
    image_size: int
    frames: int  # clip length T
    source_frames: int  # frames kept per video in the shards
    micro_batch: int
    grad_checkpointing: str  # model.backbone.grad_checkpointing: the presets' "auto"
    train_videos: int
    val_videos: int
    warmup_steps: int
    timed_steps: int
    fit_steps: int
    workers: int
    repeat: int  # each rendered video is written this many times (distinct keys): long epochs, cheap to make
    gemm_size: int
    dataset: str  # label preset: its class count sizes the classifier and the text embeddings
    num_classes: int


FULL = Settings(arch="ViT-B-16", image_size=224, frames=32, source_frames=48, micro_batch=32,
                grad_checkpointing="auto", train_videos=96, val_videos=24, warmup_steps=3, timed_steps=10,
                fit_steps=34, workers=min(12, os.cpu_count() or 1), repeat=12, gemm_size=8192, dataset="k400",
                num_classes=400)
QUICK = dataclasses.replace(FULL, train_videos=64, val_videos=8, warmup_steps=2, timed_steps=6, repeat=16)
QUICK_SECTIONS = ("train", "official_loop", "fit_device_decode")
TINY = Settings(arch="tiny", image_size=32, frames=8, source_frames=12, micro_batch=2, grad_checkpointing="auto",
                train_videos=16, val_videos=4, warmup_steps=1, timed_steps=2, fit_steps=3, workers=1, repeat=1,
                gemm_size=256, dataset="synthetic", num_classes=4)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------------------ device


def measured_gemm_tflops(device: torch.device, n: int) -> float:
    """Dense matmul rate in the training dtype (bf16 on a GPU), mean of 10 products after 3 warm-ups."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return 2 * n ** 3 * 10 / (time.perf_counter() - start) / 1e12


def device_section(device: torch.device, settings: Settings) -> dict:
    import deepspeed

    info = {"torch": torch.__version__, "deepspeed": deepspeed.__version__, "python": platform.python_version(),
            "cpu_cores": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2 ** 30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    info["gemm_tflops"] = round(measured_gemm_tflops(device, settings.gemm_size), 4)
    info["sdpa_kernels"] = sdpa_kernels(device, settings)
    return info


def sdpa_kernels(device: torch.device, settings: Settings) -> list[str]:
    """The kernels (GPU) or operators (CPU) one training SDPA call of the tower launches, forward and
    backward, at its shape (8 frames, its heads and tokens) in the training dtype: which backend the
    dispatcher picked (flash, memory-efficient, cuDNN, math)."""
    from torch.profiler import ProfilerActivity, profile

    from vidprism_ds.model.backbone import clip_model_config

    vision = clip_model_config(settings.arch, settings.image_size)["vision_cfg"]
    heads = vision["width"] // vision.get("head_width", 64)
    tokens = (settings.image_size // vision["patch_size"]) ** 2 + 1
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (torch.randn(8, heads, tokens, vision.get("head_width", 64), device=device, dtype=dtype,
                           requires_grad=True) for _ in range(3))
    activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        torch.nn.functional.scaled_dot_product_attention(q, k, v).sum().backward()
        sync(device)
    wanted = ("flash", "fmha", "attention", "attn", "cudnn", "sdpa", "efficient")
    names = {event.name for event in prof.events() if any(w in event.name.lower() for w in wanted)
             and (device.type != "cuda" or event.device_type.name == "CUDA")}
    return sorted(names)


# ------------------------------------------------------------------------------------------------ shards


def encode_sample(index: int, settings: Settings, num_classes: int, seed: int) -> tuple[int, dict]:
    """One synthetic video's shard members (JPEG frames, json, cls)."""
    from bench.data import realistic_frames
    from vidprism_ds.data.prep.encode import encode_jpeg, frame_member

    height = settings.image_size
    width = height * 4 // 3
    frames = realistic_frames(seed + index, width, height, settings.source_frames)
    label = index % num_classes
    members = {frame_member(i): encode_jpeg(frame, (width, height), 90) for i, frame in enumerate(frames)}
    members["json"] = json.dumps({"label": label, "width": width, "height": height, "num_frames": len(frames)}).encode()
    members["cls"] = str(label).encode()
    return index, members


def write_shards(out_dir: Path, videos: int, settings: Settings, num_classes: int, seed: int, repeat: int = 1) -> Path:
    """Synthetic videos as shards in the sharder's layout (JPEG frames + json + cls, manifest.json),
    rendered and encoded on every core; each is written ``repeat`` times under distinct keys, so an
    epoch holds enough batches for every loader worker to reach its steady state."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from vidprism_ds.data.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION
    from vidprism_ds.data.prep.encode import sample_key
    from vidprism_ds.data.prep.writer import AtomicShardWriter, shard_name, write_json_atomically

    out_dir.mkdir(parents=True, exist_ok=True)
    encode = partial(encode_sample, settings=settings, num_classes=num_classes, seed=seed)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rendered = [members for _, members in pool.map(encode, range(videos))]
    per_shard, total, shards = 32, videos * repeat, []
    for first in range(0, total, per_shard):
        writer = AtomicShardWriter(out_dir, shard_name("gpu_check", first // per_shard))
        for index in range(first, min(total, first + per_shard)):
            writer.add_sample(sample_key(index), rendered[index % videos])
        shards.append({"name": writer.name, "samples": writer.samples,
                       "bytes": writer.commit({"samples": writer.samples})})
    write_json_atomically(out_dir / MANIFEST_NAME, {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "dataset": settings.dataset, "classes": [],
        "num_classes": num_classes, "shards": shards, "num_samples": total})
    return out_dir


# ------------------------------------------------------------------------------------------------ training


def experiment(settings: Settings, work: Path, shards: dict, device: torch.device, **overrides):
    from vidprism_ds.config import load_config

    keys = {
        "model.backbone.arch": settings.arch, "model.backbone.image_size": settings.image_size,
        "model.backbone.grad_checkpointing": settings.grad_checkpointing, "model.loss.contrastive": 0.01,
        "model.text_cache_dir": str(shards["train"].parent.parent / "text_cache"),  # shared by every section
        # one Inductor cache for every section: the fit sections reuse what the train section compiled
        "train.compile_cache_dir": str(shards["train"].parent.parent / "compile_cache"),
        "data.dataset": settings.dataset,
        "data.train_shards": str(shards["train"]), "data.val_shards": str(shards["val"]),
        "data.num_frames": settings.frames, "data.image_size": settings.image_size,
        "data.num_workers": settings.workers, "data.hflip": settings.dataset != "synthetic", "data.shuffle_buffer": 64,
        "train.micro_batch": settings.micro_batch, "train.precision": "bf16", "train.epochs": 100,
        "train.save_every_steps": 0, "train.export_on_finish": "", "train.resume": False,
        "train.eval_every_epochs": 0,  # the eval section times evaluation; fit_* time training alone
        "train.output_dir": str(work / "run"), "logging.wandb_mode": "disabled", "logging.log_every_steps": 5,
    }
    keys.update(overrides)
    return load_config(None, [f"{k}={'' if v is None else v}" for k, v in keys.items()])


def make_trainer(cfg):
    from vidprism_ds.train.ds_config import read_ds_config
    from vidprism_ds.train.trainer import Trainer

    return Trainer(cfg, read_ds_config(REPO / "ds_configs" / "zero2.json"))


def forward_flops(trainer, frames) -> float:
    """Forward FLOPs of one micro-batch (matmuls and convolutions, as FlopCounterMode counts them), on the
    eager model even where it is compiled (the counter cannot look inside compiled graphs)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        trainer.engine(frames)
    return float(counter.get_total_flops())


def count_step_syncs(trainer, frames, labels) -> dict:
    """Host syncs in one full step (``HostSyncCounter``), DeepSpeed's backward + step counted apart; on the
    eager model (the counter is a Python function mode, which compiled graphs would not see)."""
    from vidprism_ds.model.losses import combine_losses
    from vidprism_ds.utils.op_count import HostSyncCounter

    with torch.compiler.set_stance("force_eager"), HostSyncCounter() as everything:
        output = trainer.engine(frames)
        losses = combine_losses(trainer.cfg.model.loss, output, labels, trainer.text_cd)
        with HostSyncCounter() as deepspeed_part:
            trainer.engine.backward(losses.total)
            trainer.engine.step()
    return {"deepspeed_backward_and_step": deepspeed_part.summary(),
            "forward_and_loss": everything.total - deepspeed_part.total}


def time_steps(trainer, frames, labels, settings: Settings) -> dict:
    from vidprism_ds.model.losses import combine_losses

    device = trainer.device

    def step():
        output = trainer.engine(frames)
        losses = combine_losses(trainer.cfg.model.loss, output, labels, trainer.text_cd)
        trainer.engine.backward(losses.total)
        trainer.engine.step()
        return losses.total

    first_start = time.perf_counter()
    step()
    sync(device)
    first_step_s = time.perf_counter() - first_start
    for _ in range(settings.warmup_steps - 1):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(settings.timed_steps):
        start = time.perf_counter()
        loss = step()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"first_step_s": round(first_step_s, 2), "step_ms": round(1e3 * statistics.median(times), 1),
            "step_ms_min": round(1e3 * min(times), 1), "final_loss": float(loss),
            "peak_memory_gib": (round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
                                if device.type == "cuda" else None),
            "peak_reserved_gib": (round(torch.cuda.max_memory_reserved(device) / 2 ** 30, 2)
                                  if device.type == "cuda" else None)}


def fixed_batch(trainer):
    batch = next(iter(trainer.train_loader))
    on_device = trainer.to_device(batch)
    return trainer.step_fns.normalise(on_device["frames_u8"], trainer.dtype), on_device["labels"]


def train_section(settings: Settings, work: Path, shards: dict, device: torch.device, gemm_tflops: float,
                  compile_setting: str | bool) -> dict:
    cfg = experiment(settings, work / f"train_compile_{compile_setting}", shards, device,
                     **{"train.compile": compile_setting})
    trainer = make_trainer(cfg)
    try:
        frames, labels = fixed_batch(trainer)
        backbone = trainer.model.backbone
        result = {"micro_batch": settings.micro_batch, "frames": settings.frames, "arch": settings.arch,
                  "grad_checkpointing": settings.grad_checkpointing, "dtype": str(trainer.dtype),
                  "compiled": trainer.compile_cache is not None,
                  "checkpointed_blocks": f"{backbone.checkpointed_blocks} of {backbone.recorded_blocks}"}
        model_tflop = round(3 * forward_flops(trainer, frames) / 1e12, 3)
        result.update(time_steps(trainer, frames, labels, settings))
        step_s = result["step_ms"] / 1e3
        result["clips_per_s"] = round(settings.micro_batch / step_s, 2)
        result["model_tflop_per_step"] = model_tflop
        result["mfu_vs_measured_gemm"] = (round(model_tflop * 1e12 / step_s / (gemm_tflops * 1e12), 4)
                                          if gemm_tflops and model_tflop else None)
        estimate = trainer.memory_estimate
        if estimate is not None:
            result["estimate"] = {name: round(getattr(estimate, name) / 2 ** 30, 3) for name in (
                "parameter_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "workspace_bytes",
                "total_bytes")}
            result["estimate"]["activation_mib_per_frame"] = round(estimate.activation_bytes_per_frame / 2 ** 20, 2)
            if result["peak_memory_gib"]:
                result["estimate_over_measured_peak"] = round(
                    estimate.total_bytes / 2 ** 30 / result["peak_memory_gib"], 3)
        result["host_syncs_per_step"] = count_step_syncs(trainer, frames, labels)
        return result
    finally:
        release(trainer)


def release(trainer) -> None:
    import gc

    trainer.reporter.finish()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------ head


def head_section(settings: Settings, device: torch.device, official_repo: Path | None) -> dict:
    from bench.head import _official_module, time_fwd_bwd
    from vidprism_ds.config.schema import HeadConfig
    from vidprism_ds.model.head import VidPrismHead

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dim, classes, batch, frames = 512, settings.num_classes, settings.micro_batch, settings.frames
    torch.manual_seed(0)
    ours = VidPrismHead(dim, classes, HeadConfig(mode="official"), max_frames=frames).to(device, dtype).train()
    x_btd = torch.randn(batch, frames, dim, device=device, dtype=dtype, requires_grad=True)

    def ours_step():
        out = ours(x_btd)
        return out.logits.float().sum() + out.rank_loss.float() + out.diversity_loss.float()

    repeats = dict(warmup=settings.warmup_steps, repeats=settings.timed_steps)
    rows = {"ours_official_mode_ms": round(1e3 * time_fwd_bwd(ours_step, device=device, **repeats), 2)}
    if official_repo is None:
        rows["official"] = "not run: pass --official-repo (a checkout of the official VidPrism code)"
        return rows
    official = _official_module(official_repo, ours.float(), dim, classes).to(device, dtype).train()
    ours.to(dtype)

    def official_step():
        logits, _, _, div, rank = official(x_btd, batch, frames)
        return logits.float().sum() + rank.float() + div.float()

    rows["official_module_ms"] = round(1e3 * time_fwd_bwd(official_step, device=device, **repeats), 2)
    rows["official_over_ours"] = round(rows["official_module_ms"] / rows["ours_official_mode_ms"], 2)
    return rows


# ------------------------------------------------------------------------------------------------ official


def official_loop_section(settings: Settings, device: torch.device, official_repo: Path | None,
                          ours: dict | None) -> dict:
    """The official training step (``bench/official_loop.py``) at our batch, or at half of it when it
    does not fit (the official code keeps every activation); the clips/s ratio to our ``train`` section."""
    if official_repo is None:
        return {"not_run": "pass --official-repo (a checkout of the official VidPrism code)"}
    from bench.official_loop import build_official_model, official_loop_times

    model = build_official_model(settings.arch, settings.image_size, settings.num_classes, official_repo).to(device)
    result, batch = {}, settings.micro_batch
    while batch >= 1:
        generator = torch.Generator().manual_seed(0)
        frames = torch.randn(batch, settings.frames, 3, settings.image_size, settings.image_size,
                             generator=generator).to(device)
        labels = torch.randint(0, settings.num_classes, (batch,), generator=generator).to(device)
        text = torch.randn(settings.num_classes, int(model.tower.output_dim), generator=generator).to(device)
        try:
            result = official_loop_times(model, frames, labels, text, settings.warmup_steps, settings.timed_steps)
            break
        except torch.OutOfMemoryError:
            result["out_of_memory_at_batch"] = batch
            del frames
            torch.cuda.empty_cache()
            batch //= 2
    result["micro_batch"] = batch
    if isinstance(ours, dict) and ours.get("clips_per_s") and result.get("clips_per_s"):
        result["ours_over_official"] = round(ours["clips_per_s"] / result["clips_per_s"], 2)
    return result


# ------------------------------------------------------------------------------------------------ loader


def cpu_seconds() -> float:
    """This process's and its finished children's (the loader workers') CPU time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fit_section(settings: Settings, work: Path, shards: dict, device: torch.device, decode_device: str,
                compute_only: dict | None = None) -> dict:
    """``Trainer.fit`` for ``fit_steps`` steps: the loader and the model together, as a run trains."""
    cfg = experiment(settings, work / f"fit_{decode_device}", shards, device, **{
        "data.decode_device": decode_device, "train.max_steps": settings.fit_steps})
    trainer = make_trainer(cfg)
    try:
        marks = []
        cpu_start = cpu_seconds()

        def on_step(step):
            sync(device)
            marks.append((time.perf_counter(), cpu_seconds()))

        trainer.fit(on_step=on_step)
        # the first two steps include worker start-up; the rest is the steady state
        (t0, c0), (t1, c1) = marks[1], marks[-1]
        clips = (len(marks) - 2) * settings.micro_batch
        result = {"decode_device": decode_device, "clips_per_s": round(clips / (t1 - t0), 2),
                  "cpu_ms_per_clip_steady": round(1e3 * (c1 - c0) / clips, 1),
                  "cpu_s_total": round(cpu_seconds() - cpu_start, 1), "steps": len(marks),
                  "loader_workers": settings.workers}
        if isinstance(compute_only, dict) and compute_only.get("clips_per_s"):
            result["share_of_compute_rate"] = round(result["clips_per_s"] / compute_only["clips_per_s"], 3)
        return result
    finally:
        release(trainer)


def loader_cost_section(settings: Settings, shards: dict, device: torch.device) -> dict:
    """CPU cost per clip of producing training batches, without the model: uint8 batches (what the
    trainer gets now), the same normalised to fp32 on the CPU (what it got before), and JPEG batches
    for device decode (decoded on ``device``); plus the pixel difference between the two decodes."""
    from vidprism_ds.config.schema import DataConfig
    from vidprism_ds.data import build_train_loader
    from vidprism_ds.data.device_decode import decode_clips
    from vidprism_ds.data.transforms import normalise

    base = DataConfig(dataset=settings.dataset, num_frames=settings.frames, image_size=settings.image_size,
                      num_workers=settings.workers, hflip=settings.dataset != "synthetic", shuffle_buffer=64)
    results = {}
    variants = (("uint8_batches", base, None), ("fp32_normalised_on_cpu", base, "cpu_normalise"),
                ("jpeg_batches_device_decode", dataclasses.replace(base, decode_device="cuda"), "device_decode"))
    for name, cfg, consume in variants:
        loader = build_train_loader(cfg, shards["train"], settings.micro_batch, seed=3)
        cpu_start, start, clips = cpu_seconds(), time.perf_counter(), 0
        for batch in loader:
            if consume == "cpu_normalise":
                normalise(batch["frames"])
            elif consume == "device_decode":
                decode_clips(batch, device, settings.image_size)
            clips += batch["labels"].shape[0]
        sync(device)
        elapsed = time.perf_counter() - start
        results[name] = {"clips_per_s": round(clips / elapsed, 1),
                         "cpu_ms_per_clip": round(1e3 * (cpu_seconds() - cpu_start) / clips, 1), "clips": clips}
    cpu_batch = next(iter(build_train_loader(base, shards["train"], settings.micro_batch, seed=5)))
    jpeg_batch = next(iter(build_train_loader(dataclasses.replace(base, decode_device="cuda"), shards["train"],
                                              settings.micro_batch, seed=5)))
    difference = (decode_clips(jpeg_batch, device, settings.image_size).cpu().int() - cpu_batch["frames"].int()).abs()
    results["device_vs_cpu_decode_pixels"] = {"mean_abs": round(difference.float().mean().item(), 3),
                                              "max_abs": int(difference.max()),
                                              "share_over_8": round((difference > 8).float().mean().item(), 5)}
    return results


# ------------------------------------------------------------------------------------------------ eval


def eval_section(settings: Settings, work: Path, shards: dict, device: torch.device) -> dict:
    cfg = experiment(settings, work / "eval", shards, device, **{"data.test_clips": 2, "data.test_crops": 3})
    trainer = make_trainer(cfg)
    try:
        sync(device)
        start = time.perf_counter()
        result, _ = trainer.run_eval(0, tag="gpu_check")
        sync(device)
        elapsed = time.perf_counter() - start
        return {"videos": result.samples, "views_per_video": 6, "seconds": round(elapsed, 2),
                "videos_per_s": round(result.samples / elapsed, 2), "top1_random_init": round(result.top1, 4)}
    finally:
        release(trainer)


# ------------------------------------------------------------------------------------------------ main


def run_section(report: dict, name: str, fn, *args, **kwargs) -> None:
    """Run one section; its failure is written into the report (with the traceback's tail) and the
    others still run, so one command on a borrowed GPU returns every figure it can."""
    start = time.perf_counter()
    print(f"# {name} ...", file=sys.stderr, flush=True)
    try:
        report[name] = fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - recorded in the report and turned into exit code 1
        report[name] = {"error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc().splitlines()[-12:]}
    report.setdefault("section_seconds", {})[name] = round(time.perf_counter() - start, 1)
    print(f"# {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (the test suite's dry run)")
    parser.add_argument("--quick", action="store_true",
                        help=f"only {', '.join(QUICK_SECTIONS)} (with device and shards), fewer timed steps")
    parser.add_argument("--official-repo", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--skip", nargs="*", default=[], help="section names to leave out")
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--loader-only", action="store_true",
                        help="only the shards and loader sections at the full settings, on a GPU or the CPU "
                             "(the loader's CPU cost per clip on any machine)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: min(12, cores))")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = TINY if args.tiny else QUICK if args.quick else FULL
    if args.micro_batch:
        settings = dataclasses.replace(settings, micro_batch=args.micro_batch)
    if args.workers:
        settings = dataclasses.replace(settings, workers=args.workers)
    if args.loader_only:
        args.skip = [*args.skip, "train", "train_eager", "official_loop", "head_vs_official", "fit_cpu_decode",
                     "fit_device_decode", "eval"]
    if not args.tiny and not args.loader_only and not torch.cuda.is_available():
        print("bench/gpu_check.py: no GPU here; use --tiny for the CPU dry run", file=sys.stderr)
        return 2
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    device = torch.device("cuda", 0) if torch.cuda.is_available() and not args.tiny else torch.device("cpu")
    if device.type == "cpu" and not args.tiny:
        settings = dataclasses.replace(settings, gemm_size=2048)
    started = time.perf_counter()
    report: dict = {"mode": "tiny" if args.tiny else "quick" if args.quick else "full",
                    "settings": dataclasses.asdict(settings)}
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu_check_")))
        wanted = lambda name: name not in args.skip and (not args.quick or name in QUICK_SECTIONS)  # noqa: E731
        run_section(report, "device", device_section, device, settings)
        gemm = report["device"].get("gemm_tflops", 0.0) if isinstance(report["device"], dict) else 0.0
        shards = {"train": work / "shards" / "train", "val": work / "shards" / "val"}
        run_section(report, "shards", lambda: {
            "train": str(write_shards(shards["train"], settings.train_videos, settings, settings.num_classes, seed=0,
                                      repeat=settings.repeat)),
            "val": str(write_shards(shards["val"], settings.val_videos, settings, settings.num_classes,
                                    seed=10_000))})
        # lambdas: the later sections read the earlier ones' figures from the report when they run
        for name, fn, fn_args in (
                ("train", train_section, lambda: (settings, work, shards, device, gemm, "auto")),
                ("train_eager", train_section, lambda: (settings, work, shards, device, gemm, False)),
                ("official_loop", official_loop_section,
                 lambda: (settings, device, args.official_repo, report.get("train"))),
                ("head_vs_official", head_section, lambda: (settings, device, args.official_repo)),
                ("loader", loader_cost_section, lambda: (settings, shards, device)),
                ("fit_cpu_decode", fit_section, lambda: (settings, work, shards, device, "cpu", report.get("train"))),
                ("fit_device_decode", fit_section,
                 lambda: (settings, work, shards, device, "cuda", report.get("train"))),
                ("eval", eval_section, lambda: (settings, work, shards, device))):
            if not wanted(name):
                continue
            if name == "fit_device_decode" and device.type != "cuda":
                report[name] = "not run: data.decode_device=cuda needs a GPU (the loader section decodes on the CPU)"
                continue
            run_section(report, name, fn, *fn_args())
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=1, default=str)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
    failed = [name for name, value in report.items() if isinstance(value, dict) and "error" in value]
    if failed:
        print(f"bench/gpu_check.py: failed sections: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
