"""Training-step throughput: clips/s per device and model FLOP utilisation; EP=2 against EP=1.

    deepspeed --num_gpus 2 bench/train.py --ep-size 2            # one configuration, 2 processes
    python bench/train.py --compare-ep --nproc 2                  # EP=1 then EP=2 on the same processes
    deepspeed --num_gpus 2 bench/train.py --zero-stage 0 --checkpoint-dir /tmp/z0   # optimizer state per rank
    deepspeed --num_gpus 1 bench/train.py --arch ViT-B-16 --frames 32 --image-size 224 --micro-batch 8

Times full DeepSpeed steps (forward, backward, ZeRO-2 optimizer step) of the VideoClassifier on batches
already in memory, so the figure is the model and the system, not the data loader (bench/data.py
measures that). FLOPs per step are counted once with torch's FlopCounterMode on a single-process
fwd+bwd; MFU = FLOPs / step time / peak. Peak: the device's dense bf16 figure on known GPUs, otherwise
the fp32 matmul rate measured on this machine (stated in the output), or --peak-tflops.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 peak (TFLOP/s) by device name fragment.
GPU_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="tiny", help="model.backbone.arch (tiny, ViT-B-16, ViT-L-14)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--ep-size", type=int, default=1)
    p.add_argument("--experts-per-rate", type=int, default=1)
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, default=0.0)
    p.add_argument("--checkpoint-dir", default="", help="save a checkpoint after timing and list its files "
                   "(optimizer-state bytes per rank: ZeRO-0 vs ZeRO-2)")
    p.add_argument("--compare-ep", action="store_true", help="run EP=1 and EP=2 with the deepspeed launcher")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def bench_config(args):
    from vidprism_ds.config import load_config

    return load_config(None, [
        f"model.backbone.arch={args.arch}", f"model.backbone.image_size={args.image_size}",
        f"data.image_size={args.image_size}", f"data.num_frames={args.frames}",
        f"model.head.experts_per_rate={args.experts_per_rate}", f"train.micro_batch={args.micro_batch}",
        f"parallel.ep_size={args.ep_size}"])


def count_step_flops(cfg, clips, num_classes: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from vidprism_ds.model.video_model import build_video_model

    model = build_video_model(cfg.model, num_classes, cfg.data.num_frames).model
    with FlopCounterMode(display=False) as counter:
        model(clips).logits.sum().backward()
    return float(counter.get_total_flops())


def measured_matmul_tflops(device: torch.device) -> float:
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    reps = 5
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e12


def _tensor_bytes(obj) -> int:
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def optimizer_state_report(tag_dir: Path, zero_stage: int, world: int) -> dict:
    """Optimizer-state bytes each rank holds, read back from a DeepSpeed checkpoint's tensors.

    ZeRO-0: every rank holds the whole AdamW state (moments); rank 0 saves it inside
    mp_rank_00_model_states.pt, and the fp32 weights are the model's own. ZeRO-1/2: rank r saves its
    partition to zero_pp_rank_r_*: the moments of its slice and the fp32 master copy of that slice
    (ZeRO keeps one even when the model is fp32)."""
    files = {f.name: f.stat().st_size for f in sorted(tag_dir.glob("*.pt"))}
    if zero_stage == 0:
        state = torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        moments, master = [_tensor_bytes(state["optimizer"]["state"])] * world, [0] * world
    else:
        parts = [torch.load(next(tag_dir.glob(f"zero_pp_rank_{r}_*optim_states.pt")), map_location="cpu",
                            weights_only=False)["optimizer_state_dict"] for r in range(world)]
        moments = [_tensor_bytes(part["base_optimizer_state"]["state"]) for part in parts]
        master = [_tensor_bytes(part["single_partition_of_fp32_groups"]) for part in parts]
    return {"zero_stage": zero_stage, "adam_moment_bytes_per_rank": moments,
            "fp32_master_partition_bytes_per_rank": master, "file_bytes": files}


def worker(args) -> None:
    import deepspeed
    import torch.distributed as dist
    from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

    from vidprism_ds.model.video_model import build_video_model
    from vidprism_ds.parallel import init_expert_parallel, parallelize_model

    on_gpu = torch.cuda.is_available()
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    else:  # one process per core group: oversubscribed threads would time the scheduler, not the model
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    cfg = bench_config(args)
    num_classes = 400
    size = cfg.data.image_size
    gen = torch.Generator().manual_seed(rank)
    clips = torch.randn(args.micro_batch, cfg.data.num_frames, 3, size, size, generator=gen)
    labels = torch.randint(0, num_classes, (args.micro_batch,), generator=gen)

    flops = count_step_flops(cfg, clips[:1], num_classes) * args.micro_batch if rank == 0 else 0.0

    model = build_video_model(cfg.model, num_classes, cfg.data.num_frames).model
    parallelize_model(model, init_expert_parallel(args.ep_size))
    groups = split_params_into_different_moe_groups_for_optimizer(
        [{"params": [p for p in model.parameters() if p.requires_grad], "name": "all"}])
    optimizer = torch.optim.AdamW(groups, lr=1e-4)
    ds_config = {"train_micro_batch_size_per_gpu": args.micro_batch, "gradient_accumulation_steps": 1,
                 "gradient_clipping": 1.0, "zero_allow_untested_optimizer": True,
                 "zero_optimization": {"stage": args.zero_stage, "contiguous_gradients": True},
                 "bf16": {"enabled": on_gpu}, "steps_per_print": 10 ** 9}
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    clips, labels = clips.to(device, dtype), labels.to(device)

    def step():
        out = engine(clips)
        loss = torch.nn.functional.cross_entropy(out.logits.float(), labels)
        engine.backward(loss)
        engine.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        dist.barrier()
        if on_gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if on_gpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if args.checkpoint_dir:
        engine.save_checkpoint(args.checkpoint_dir, tag="bench")
        dist.barrier()
        if rank == 0:
            print("CHECKPOINT " + json.dumps(optimizer_state_report(Path(args.checkpoint_dir, "bench"),
                                                                    args.zero_stage, world)), flush=True)
    step_s = torch.tensor([statistics.median(times)])
    dist.all_reduce(step_s, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    if rank == 0:
        if args.peak_tflops:
            peak, peak_source = args.peak_tflops, "--peak-tflops"
        elif on_gpu:
            name = torch.cuda.get_device_name()
            peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in name), 0.0)
            peak_source = f"{name} dense bf16"
        else:
            peak, peak_source = measured_matmul_tflops(device), "measured fp32 2048^3 matmul on this CPU"
        step_time = float(step_s)
        result = {
            "arch": args.arch, "frames": args.frames, "image_size": size, "micro_batch": args.micro_batch,
            "world_size": world, "ep_size": args.ep_size, "zero_stage": args.zero_stage,
            "device": torch.cuda.get_device_name() if on_gpu else platform.processor() or "cpu",
            "threads": torch.get_num_threads(), "step_ms": round(step_time * 1e3, 1),
            "clips_per_s_per_device": round(args.micro_batch / step_time, 2),
            "model_tflop_per_step_per_device": round(flops / 1e12, 4),
            "mfu": round(flops / step_time / (peak * 1e12), 4) if peak else None, "peak_tflops": round(peak, 3),
            "peak_source": peak_source,
        }
        print("RESULT " + json.dumps(result), flush=True)


def compare_ep(args) -> None:
    """EP=1 and EP=2 on the same number of processes, each in its own launcher run."""
    results = {}
    for ep in (1, 2):
        cmd = [str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", str(args.nproc), __file__,
               "--ep-size", str(ep), "--arch", args.arch, "--frames", str(args.frames),
               "--image-size", str(args.image_size), "--micro-batch", str(args.micro_batch),
               "--experts-per-rate", str(args.experts_per_rate), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        line = next(line for line in out.splitlines() if line.startswith("RESULT "))
        results[ep] = json.loads(line[len("RESULT "):])
        print(line, flush=True)
    ratio = results[2]["step_ms"] / results[1]["step_ms"]
    print(f"EP=2 / EP=1 step time on {args.nproc} processes: {ratio:.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.compare_ep:
        compare_ep(args)
    else:
        worker(args)


if __name__ == "__main__":
    main()
