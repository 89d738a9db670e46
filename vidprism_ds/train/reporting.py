"""Rank-0 console lines and wandb (offline without an API key, or disabled)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Collection, Optional

import torch

from vidprism_ds.analysis.eval_result import top_k_text
from vidprism_ds.config.schema import LoggingConfig, ModelConfig
from vidprism_ds.model.losses import diversity_between_experts


def expert_specialisation(expert_means_bed: torch.Tensor) -> float:
    """Mean off-diagonal cosine similarity between the experts' pooled outputs (lower = more specialised)."""
    if expert_means_bed.shape[1] < 2:
        return float("nan")  # one expert: nothing to compare (the loss term is 0 there)
    # the same quantity the default mode's diversity loss minimises
    return float(diversity_between_experts(expert_means_bed.detach().float()))


def wandb_mode(cfg: LoggingConfig, environ=os.environ) -> str:
    if cfg.wandb_mode != "auto":
        return cfg.wandb_mode
    return "online" if environ.get("WANDB_API_KEY") else "offline"


class Reporter:
    """Does nothing on ranks other than 0."""

    def __init__(self, cfg: LoggingConfig, output_dir: Path, rank: int, config: dict, run_name: str):
        self.enabled = rank == 0
        self.run = None
        self.history_file = output_dir / "train_history.jsonl"
        if not self.enabled:
            return
        mode = wandb_mode(cfg)
        if mode != "disabled":
            import wandb

            self.run = wandb.init(project=cfg.wandb_project, name=cfg.run_name or run_name, config=config,
                                  dir=str(output_dir), mode=mode, resume="allow")

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stdout, flush=True)

    def record(self, entry: dict) -> None:
        """One line per optimizer step in <output_dir>/train_history.jsonl (appended across resumes)."""
        if self.enabled:
            with open(self.history_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def log(self, metrics: dict, step: int, prefix: str = "train") -> None:
        if self.run is not None:
            self.run.log({f"{prefix}/{k}": v for k, v in metrics.items()}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def zero_loss_terms(model: ModelConfig) -> frozenset[str]:
    """Loss terms that are 0 by construction for ``model``: the router's without routed experts (only the
    VidPrism head with ``model.head.experts_per_rate`` > 1 routes). The step line leaves them out; the
    history and wandb keep every term."""
    routed = model.variant == "vidprism" and model.head.experts_per_rate > 1
    return frozenset() if routed else frozenset({"router_aux", "router_z"})


def format_train_line(step: int, epoch: int, clips_per_s: float, lr: float, terms: dict[str, float],
                      expert_weights: Optional[list[float]], specialisation: float,
                      omit: Collection[str] = ()) -> str:
    losses = " ".join(f"{k} {v:.4f}" for k, v in terms.items() if k not in omit)
    experts = ""
    if expert_weights is not None and len(expert_weights) > 1:
        experts = " | experts " + " ".join(f"{w:.2f}" for w in expert_weights) + f" sim {specialisation:.3f}"
    return f"step {step} epoch {epoch} | {clips_per_s:.1f} clips/s | lr {lr:.2e} | {losses}{experts}"


def format_eval_line(tag: str, accuracy_by_k: dict[int, float], samples: int, num_classes: int) -> str:
    """The evaluation's console line. Top-k only for k below the number of classes: with k classes or fewer
    top-k is 1.0 whatever the model does."""
    return f"eval {tag}: {top_k_text(accuracy_by_k, num_classes)} ({samples} videos)"
