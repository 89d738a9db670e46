"""What a multirate head makes of a clip's burst part: the tokens its fast groups read, and whether they
still tell two blink periods apart (docs/results.md, "Why multirate clips did not separate ...").

``burst_tokens`` runs a ``VideoClassifier`` with a ``VidPrismHead`` on multirate clips and keeps, per clip,
the burst part's frame embeddings (what the backbone gives, before the time encoding), each fast group's
burst tokens (what its expert reads after its segment tokens, as the head hands them to the experts), the
burst frame each of those tokens kept, and each fast expert's outputs on its burst tokens.

``probe_accuracy`` is a cross-validated linear probe (ridge classifier, closed form: deterministic and
quick). Two views of a token sequence are probed: the tokens themselves, flattened (a linear probe must
then learn the pattern at every phase), and ``change_features``, the mean absolute change between
consecutive tokens per channel (phase-invariant: what a blink's rate changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from vidprism_ds.analysis.collect import _flatten_views
from vidprism_ds.data.transforms import frames_to_device


@dataclass
class BurstTokens:
    labels_n: np.ndarray  # (N,)
    frames_nfd: np.ndarray  # (N, F, D) the burst part's frame embeddings
    # per fast rate group: its rate, its burst tokens (N, L, D), the burst frame each window kept (N, L,
    # as positions in the burst part), and its expert's outputs on those tokens (N, L, D)
    rates: list[int] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)
    expert_out: list[np.ndarray] = field(default_factory=list)


@torch.no_grad()
def burst_tokens(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], max_clips: int = 0) -> BurstTokens:
    """Eval mode, no grad; ``model.head`` must be a ``VidPrismHead`` built with ``burst_frames`` > 0."""
    head = model.head
    if not getattr(head, "burst_frames", 0):
        raise ValueError("burst_tokens needs a multirate head (burst_frames > 0)")
    was_training = model.training
    model.eval()
    captured: dict[str, list] = {}
    run_experts = head._run_experts

    def capture_experts(streams):
        outputs = run_experts(streams)
        captured["streams"], captured["expert_outputs"] = streams, outputs[0]
        return outputs

    head._run_experts = capture_experts  # an instance attribute: the class's method stays as it is
    groups = [g for g, reads in enumerate(head.reads_burst) if reads]
    burst = head.burst_frames
    parts: dict[str, list] = {"labels": [], "frames": [], "tokens": [], "kept": [], "experts": []}
    seen = 0
    try:
        for batch in batches:
            frames, labels, times = _flatten_views(batch)
            if frames.shape[0] == 0:
                continue
            x_btd = model.backbone(frames_to_device(frames, torch.device("cpu"), torch.float32))
            out = head(x_btd, frame_times=times.float() if times is not None else None)
            parts["labels"].append(labels.numpy())
            parts["frames"].append(x_btd[:, -burst:].float().numpy())
            # each fast group's stream is its segment tokens, then its burst tokens (head.forward)
            segment_lengths = [-(-(x_btd.shape[1] - burst) // head.rates[g]) for g in groups]
            parts["tokens"].append([captured["streams"][g][:, n:].float().numpy()
                                    for g, n in zip(groups, segment_lengths)])
            parts["kept"].append([(out.keep_indices[g][:, n:] - (x_btd.shape[1] - burst)).numpy()
                                  for g, n in zip(groups, segment_lengths)])
            parts["experts"].append([captured["expert_outputs"][g][:, n:].float().numpy()
                                     for g, n in zip(groups, segment_lengths)])
            seen += frames.shape[0]
            if max_clips and seen >= max_clips:
                break
    finally:
        del head._run_experts
        model.train(was_training)
    stack = lambda key, i: np.concatenate([p[i] for p in parts[key]])  # noqa: E731
    return BurstTokens(labels_n=np.concatenate(parts["labels"]), frames_nfd=np.concatenate(parts["frames"]),
                       rates=[head.rates[g] for g in groups],
                       tokens=[stack("tokens", i) for i in range(len(groups))],
                       kept=[stack("kept", i) for i in range(len(groups))],
                       expert_out=[stack("experts", i) for i in range(len(groups))])


def change_features(tokens_nld: np.ndarray) -> np.ndarray:
    """(N, L, D) -> (N, D): mean |token[l + 1] - token[l]| per channel (0 for a constant sequence)."""
    if tokens_nld.shape[1] < 2:
        return np.zeros(tokens_nld.shape[::2], dtype=np.float64)
    return np.abs(np.diff(tokens_nld.astype(np.float64), axis=1)).mean(axis=1)


def probe_accuracy(features_nf: np.ndarray, labels_n: np.ndarray, folds: int = 5, ridge: float = 1.0,
                   seed: int = 0) -> float:
    """Cross-validated accuracy of a ridge classifier (one-vs-rest, standardised features, a bias) on
    ``features_nf``; each fold trains on the other folds and tests on itself (folds drawn once, by seed)."""
    features_nf = features_nf.reshape(len(features_nf), -1).astype(np.float64)
    classes = np.unique(labels_n)
    order = np.random.default_rng(seed).permutation(len(labels_n))
    correct = 0
    for fold in np.array_split(order, folds):
        train = np.setdiff1d(order, fold)
        mean, std = features_nf[train].mean(0), features_nf[train].std(0) + 1e-8
        a = np.hstack([(features_nf[train] - mean) / std, np.ones((len(train), 1))])
        targets = (labels_n[train][:, None] == classes[None]).astype(np.float64) * 2 - 1
        weights = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ targets)
        test = np.hstack([(features_nf[fold] - mean) / std, np.ones((len(fold), 1))])
        correct += int((classes[(test @ weights).argmax(1)] == labels_n[fold]).sum())
    return correct / len(labels_n)


def constant_fraction(tokens_nld: np.ndarray, labels_n: np.ndarray, class_ids: Sequence[int],
                      relative: float = 0.05) -> dict[int, float]:
    """Per class, the fraction of clips whose token sequence is constant: the largest change between
    consecutive tokens is below ``relative`` times the mean token norm."""
    change_n = np.abs(np.diff(tokens_nld, axis=1)).max(axis=(1, 2)) if tokens_nld.shape[1] > 1 else \
        np.zeros(len(tokens_nld))
    scale_n = np.linalg.norm(tokens_nld, axis=2).mean(axis=1) / np.sqrt(tokens_nld.shape[2])
    constant_n = change_n < relative * scale_n
    return {c: float(constant_n[labels_n == c].mean()) for c in class_ids if (labels_n == c).any()}
