"""Benchmark the VidPrism head: fwd+bwd time and ATen operator count against loop references.

    python bench/head.py                                   # B in {8, 32}, T=32, D=512, CPU
    python bench/head.py --official-repo /path/to/VidPrism # also time the official module
    python bench/head.py --compile                         # also time the head under torch.compile

Rows: this project's vectorised head (default and official mode); the per-window, per-clip loop
reference from tests/model/reference.py (the head written the straightforward way); and, when a
checkout of the official code is given, the official module with the same weights.

With --compile, each mode also runs compiled whole (``nn.Module.compile``, Inductor, static shapes, as
``train.compile`` does). The operator counter cannot see compiled code (Dynamo runs eagerly under a
dispatch mode), so for those rows the profiler counts what the compiled forward and backward graphs
launch in one step: "Inductor kernels" (fused kernels) and "ATen ops" (matmuls, attention and other
extern kernels or fallbacks); their sum is the step's launch count inside the compiled graphs, and the
few ops that stay eager around them (the loss sum, gradient accumulation) are not counted. "compile s"
is the first fwd+bwd, which traces and compiles (once per batch size: shapes are static).
"""

from __future__ import annotations

import argparse
import copy
import functools
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch._inductor.config
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.model.reference import reference_head_forward  # noqa: E402
from vidprism_ds.compat.official import _PREFIX_MAP, load_official_head  # noqa: E402
from vidprism_ds.config.schema import HeadConfig  # noqa: E402
from vidprism_ds.model.head import VidPrismHead  # noqa: E402
from vidprism_ds.utils.op_count import count_fwd_bwd_ops  # noqa: E402


def time_fwd_bwd(step, warmup: int, repeats: int, device: torch.device = torch.device("cpu")) -> float:
    """Median seconds of ``step().backward()``; on a GPU each timing waits for the queued kernels."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step().backward()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().backward()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# The profiler event around each call of an Inductor-compiled graph; what it launches are its children.
COMPILED_GRAPH_EVENT = "## Call CompiledFxGraph"


def compile_first_step(step) -> float:
    """Seconds of the first fwd+bwd of a compiled ``step``, which traces and compiles both graphs.

    Inductor's C++ kernels (CPU) are generated with a profiler record of their own
    (``cpp.enable_kernel_profile``; a no-op check while no profiler runs) so that ``compiled_launches``
    can count them; its Triton kernels (GPU) record themselves anyway.
    """
    with torch._inductor.config.patch({"cpp.enable_kernel_profile": True}):
        start = time.perf_counter()
        step().backward()  # the backward graph is compiled at the first backward
        return time.perf_counter() - start


def compiled_launches(step) -> tuple[int, int]:
    """(Inductor kernels, ATen ops) that the compiled graphs launch in one fwd+bwd, from the profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step().backward()
    launched = [event.name for event in prof.events()
                if event.cpu_parent is not None and event.cpu_parent.name.startswith(COMPILED_GRAPH_EVENT)]
    aten_ops = sum(name.startswith("aten::") for name in launched)
    return len(launched) - aten_ops, aten_ops


def _official_module(repo: Path, head: VidPrismHead, dim: int, classes: int):
    sys.path.insert(0, str(repo))
    from modules.videomoe import VidPrism  # the official code, from the user's checkout

    official = VidPrism(num_experts=4, sampling_rates=list(head.rates), num_classes=classes, d_model=dim)
    ours = head.state_dict()
    state = official.state_dict()
    for key in state:
        for old, new in _PREFIX_MAP:
            if key.startswith(old) and new + key[len(old):] in ours:
                state[key] = ours[new + key[len(old):]]
    official.load_state_dict(state)
    return official


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--official-repo", type=Path, default=None)
    parser.add_argument("--compile", action="store_true",
                        help="also run each mode compiled (Inductor); the first step per batch size compiles")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    official_head = VidPrismHead(args.dim, args.classes, HeadConfig(mode="official")).to(device).train()
    default_head = VidPrismHead(args.dim, args.classes, HeadConfig(mode="default")).to(device).train()
    default_head.load_state_dict(official_head.state_dict())
    official_module = (_official_module(args.official_repo, official_head, args.dim, args.classes).to(device).train()
                       if args.official_repo else None)
    if official_module is not None:  # sanity: same weights, same logits (eval mode, rank loss off)
        x_check = torch.randn(4, args.frames, args.dim, device=device)
        ours = load_official_head(official_module.state_dict()).to(device)(x_check).logits
        theirs = official_module.eval()(x_check, 4, args.frames)[0]
        official_module.train()
        print(f"# official-module logits max |diff| vs ours: {(ours - theirs).abs().max().item():.2e}")

    compiled_heads = {}
    if args.compile:
        for name, head in (("default", default_head), ("official", official_head)):
            compiled_heads[name] = copy.deepcopy(head)
            compiled_heads[name].compile(dynamic=False)

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, device={device}, T={args.frames}, D={args.dim}")
    if args.compile:
        print("| variant | B | fwd+bwd ms (median) | ATen ops fwd+bwd | Inductor kernels fwd+bwd | compile s |")
        print("|---|---|---|---|---|---|")
    else:
        print("| variant | B | fwd+bwd ms (median) | ATen ops fwd+bwd |")
        print("|---|---|---|---|")
    for batch in args.batches:
        x_btd = torch.randn(batch, args.frames, args.dim, device=device)

        def vectorised(head=None):
            out = head(x_btd)
            return out.logits.sum() + out.rank_loss + out.diversity_loss + out.balance_loss

        def loop_reference():
            logits, weights, rank = reference_head_forward(official_head, x_btd)
            return logits.sum() + rank + weights.sum()

        variants = [("vectorised (default mode)", lambda: vectorised(default_head)),
                    ("vectorised (official mode)", lambda: vectorised(official_head)),
                    ("loop reference (official maths)", loop_reference)]
        compiled_variants = [(f"vectorised ({mode} mode), compiled", functools.partial(vectorised, head))
                             for mode, head in compiled_heads.items()]
        if official_module is not None:
            def official_step():
                logits, weights, _, div, rank = official_module(x_btd, batch, args.frames)
                return logits.sum() + rank + div
            variants.append(("official module", official_step))
        extra_columns = " - | - |" if args.compile else ""
        for name, step in variants:
            step().backward()  # steady state: constants built once per clip length, gradients allocated
            ops = count_fwd_bwd_ops(step).total
            ms = 1000 * time_fwd_bwd(step, warmup=2, repeats=args.repeats, device=device)
            print(f"| {name} | {batch} | {ms:.1f} | {ops} |{extra_columns}", flush=True)
        for name, step in compiled_variants:
            compile_s = compile_first_step(step)
            kernels, ops = compiled_launches(step)
            ms = 1000 * time_fwd_bwd(step, warmup=2, repeats=args.repeats, device=device)
            print(f"| {name} | {batch} | {ms:.1f} | {ops} | {kernels} | {compile_s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
