"""Benchmark the VidPrism head: fwd+bwd time and ATen operator count against loop references.

    python bench/head.py                                   # B in {8, 32}, T=32, D=512, CPU
    python bench/head.py --official-repo /path/to/VidPrism # also time the official module

Rows: this project's vectorised head (default and official mode); the per-window, per-clip loop
reference from tests/model/reference.py (the head written the straightforward way); and, when a
checkout of the official code is given, the official module with the same weights.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.model.reference import reference_head_forward  # noqa: E402
from vidprism_ds.compat.official import _PREFIX_MAP, load_official_head  # noqa: E402
from vidprism_ds.config.schema import HeadConfig  # noqa: E402
from vidprism_ds.model.head import VidPrismHead  # noqa: E402
from vidprism_ds.utils.op_count import count_fwd_bwd_ops  # noqa: E402


def time_fwd_bwd(step, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step().backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads={torch.get_num_threads()}, device={device}, T={args.frames}, D={args.dim}")
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
        if official_module is not None:
            def official_step():
                logits, weights, _, div, rank = official_module(x_btd, batch, args.frames)
                return logits.sum() + rank + div
            variants.append(("official module", official_step))
        for name, step in variants:
            ops = count_fwd_bwd_ops(step).total
            ms = 1000 * time_fwd_bwd(step, warmup=2, repeats=args.repeats)
            print(f"| {name} | {batch} | {ms:.1f} | {ops} |", flush=True)


if __name__ == "__main__":
    main()
