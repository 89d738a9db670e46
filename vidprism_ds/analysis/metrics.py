"""Reductions of a ``Specialisation`` to the figures the report shows."""

from __future__ import annotations

import numpy as np

from vidprism_ds.analysis.collect import Specialisation


def weight_by_class(spec: Specialisation, num_classes: int) -> np.ndarray:
    """(C, E): mean readout weight of each expert over the clips of each class (NaN for an absent class)."""
    out = np.full((num_classes, spec.num_experts), np.nan)
    for c in range(num_classes):
        rows = spec.expert_weights_ne[spec.labels_n == c]
        if len(rows):
            out[c] = rows.mean(axis=0)
    return out


def expert_similarity(spec: Specialisation) -> np.ndarray:
    """(E, E): cosine similarity between experts' mean outputs, per clip, averaged over clips.

    1 on the diagonal; off the diagonal, near 1 means two experts say the same thing about a clip."""
    means = spec.expert_means_ned.astype(np.float64)
    unit = means / np.maximum(np.linalg.norm(means, axis=-1, keepdims=True), 1e-12)
    return np.einsum("ned,nfd->ef", unit, unit) / len(unit)


def mean_off_diagonal(matrix_ee: np.ndarray) -> float:
    """Mean of the off-diagonal entries; NaN for a single expert."""
    n = matrix_ee.shape[0]
    if n < 2:
        return float("nan")
    return float((matrix_ee.sum() - np.trace(matrix_ee)) / (n * (n - 1)))


def per_class_accuracy(spec: Specialisation, num_classes: int) -> np.ndarray:
    """(C,): top-1 accuracy within each class (NaN for an absent class)."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = spec.labels_n == c
        if mask.any():
            out[c] = float((spec.predictions_n[mask] == c).mean())
    return out


def top1(spec: Specialisation) -> float:
    return float((spec.predictions_n == spec.labels_n).mean())


def keep_histogram(spec: Specialisation) -> np.ndarray:
    """(rates, T): fraction of clips in which each frame was kept by each rate's sampler."""
    hist = np.zeros((len(spec.keep_indices), spec.num_frames))
    for r, keep_nw in enumerate(spec.keep_indices):
        counts = np.bincount(keep_nw.ravel(), minlength=spec.num_frames)[: spec.num_frames]
        hist[r] = counts / len(keep_nw)
    return hist
