"""PNG figures for the specialisation analysis and the temporal benchmark.

Figures are built with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``), so
nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from vidprism_ds.analysis.collect import Specialisation
from vidprism_ds.analysis.metrics import keep_histogram


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _heatmap(ax, matrix: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], title: str,
             vmin: Optional[float] = None, vmax: Optional[float] = None, cmap: str = "viridis") -> None:
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    ax.set_xticks(range(len(col_names)), labels=col_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_names)), labels=row_names, fontsize=8)
    ax.set_title(title, fontsize=9)
    lo, hi = image.get_clim()
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            if np.isfinite(value):
                dark = (value - lo) < 0.5 * (hi - lo)
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")


def plot_weight_by_class(weights_ce: np.ndarray, class_names: Sequence[str], expert_names: Sequence[str],
                         path: str | Path, title: str = "readout weight per expert, by class") -> Path:
    fig = Figure(figsize=(1.2 + 0.9 * len(expert_names), 0.9 + 0.35 * len(class_names)))
    _heatmap(fig.subplots(), weights_ce, class_names, expert_names, title, vmin=0.0, vmax=max(1e-6, np.nanmax(weights_ce)))
    return _save(fig, path)


def plot_similarity(similarity_ee: np.ndarray, expert_names: Sequence[str], path: str | Path,
                    title: str = "cosine similarity of expert outputs") -> Path:
    return plot_similarity_grid({title: (similarity_ee, expert_names)}, path)


def plot_similarity_grid(panels: dict[str, tuple[np.ndarray, Sequence[str]]], path: str | Path) -> Path:
    """One heatmap per entry ``title -> (matrix, expert names)``, side by side, on a shared -1..1 scale."""
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.3 * cols, 3.0 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (title, (matrix, names)) in zip(axes, panels.items()):
        _heatmap(ax, matrix, names, names, title, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_weight_grid(panels: dict[str, tuple[np.ndarray, Sequence[str]]], class_names: Sequence[str],
                     path: str | Path) -> Path:
    """One class x expert readout-weight heatmap per entry ``title -> (weights, expert names)``."""
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = Figure(figsize=(3.6 * cols, 0.8 + 0.35 * len(class_names) * rows + 0.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (title, (weights, names)) in zip(axes, panels.items()):
        _heatmap(ax, weights, class_names, names, title, vmin=0.0, vmax=1.0)
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_keep_positions(spec: Specialisation, rates: Sequence[int], class_names: Sequence[str], path: str | Path,
                        clips_per_class: int = 1) -> Path:
    """Which frame each rate's sampler kept, over time: one row per example clip (the first
    ``clips_per_class`` of each class), plus the fraction of all clips keeping each frame."""
    if not spec.keep_indices:
        raise ValueError("this model has no content-aware sampler: there are no keep positions to plot")
    examples = [int(i) for c in range(len(class_names)) for i in np.flatnonzero(spec.labels_n == c)[:clips_per_class]]
    num_frames = spec.num_frames
    fig = Figure(figsize=(max(6.0, 0.25 * num_frames), 1.1 * (len(examples) + 1) + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(examples) + 1, 1, sharex=True))
    for ax, clip in zip(axes, examples):
        for row, (rate, keep_nw) in enumerate(zip(rates, spec.keep_indices)):
            for start in range(0, num_frames, rate):  # window spans, alternately shaded
                if (start // rate) % 2 == 0:
                    ax.axvspan(start - 0.5, min(start + rate, num_frames) - 0.5, ymin=row / len(rates),
                               ymax=(row + 1) / len(rates), color="0.9", lw=0)
            ax.scatter(keep_nw[clip], np.full(keep_nw.shape[1], row), s=14, color=f"C{row}")
        ax.set_yticks(range(len(rates)), labels=[f"r={r}" for r in rates], fontsize=7)
        ax.set_ylim(-0.5, len(rates) - 0.5)
        ax.set_title(f"clip {clip}: {class_names[spec.labels_n[clip]]} "
                     f"(predicted {class_names[spec.predictions_n[clip]]})", fontsize=8)
    hist = keep_histogram(spec)
    axes[-1].imshow(hist, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0,
                    extent=(-0.5, num_frames - 0.5, len(rates) - 0.5, -0.5))
    axes[-1].set_yticks(range(len(rates)), labels=[f"r={r}" for r in rates], fontsize=7)
    axes[-1].set_title(f"fraction of all {len(spec.labels_n)} clips keeping each frame", fontsize=8)
    axes[-1].set_xlabel("frame index")
    return _save(fig, path)


def plot_accuracy_by_variant(accuracy_by_variant: dict[str, Sequence[float]], path: str | Path,
                             chance: Optional[float] = None, title: str = "top-1 by variant") -> Path:
    """Bar of the mean per variant with every seed's value as a dot."""
    names = list(accuracy_by_variant)
    fig = Figure(figsize=(1.0 + 0.8 * len(names), 3.6))
    ax = fig.subplots()
    means = [float(np.mean(accuracy_by_variant[n])) for n in names]
    ax.bar(range(len(names)), means, color="C0", alpha=0.6)
    for i, name in enumerate(names):
        values = accuracy_by_variant[name]
        ax.scatter(np.full(len(values), i), values, color="black", s=10, zorder=3)
    if chance is not None:
        ax.axhline(chance, color="C3", ls="--", lw=1, label="chance")
        ax.legend(fontsize=8)
    ax.set_xticks(range(len(names)), labels=names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("top-1")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
