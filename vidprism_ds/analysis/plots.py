"""PNG figures for the specialisation analysis and the temporal benchmark.

Figures are built with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``), so
nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator

from vidprism_ds.analysis.collect import Specialisation
from vidprism_ds.analysis.metrics import keep_histogram


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def label_ticks(axis, labels: Sequence[str], positions: Optional[Sequence[float]] = None, fontsize: float = 8,
                rotation: float = 0.0) -> None:
    """Tick labels on a matplotlib x or y axis, at ``positions`` (default 0, 1, ...); rotated ones are
    right-aligned under their tick.

    Through a fixed locator and formatter rather than ``set_xticks(labels=...)``: matplotlib's
    ``set_ticklabels`` enters ``warnings.catch_warnings``, which makes Python forget which warnings it has
    shown, so in training a DeepSpeed warning printed once came back after every evaluation report."""
    axis.set_major_locator(FixedLocator(list(range(len(labels))) if positions is None else list(positions)))
    axis.set_major_formatter(FixedFormatter(list(labels)))
    for label in axis.get_ticklabels():
        label.set_fontsize(fontsize)
        label.set_rotation(rotation)
        if rotation:
            label.set_horizontalalignment("right")


def heatmap(ax, matrix: np.ndarray, row_names: Sequence[str], col_names: Sequence[str], title: str,
            vmin: Optional[float] = None, vmax: Optional[float] = None, cmap: str = "viridis", annotate: bool = True,
            tick_labels: bool = True, row_labels: bool = True):
    """``matrix`` as an image with each finite value written in its cell (``annotate``; white on dark cell
    colours, black on light ones). ``row_labels=False`` leaves the row names to a neighbouring panel.
    Returns the image, for a colour bar."""
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    if tick_labels:
        label_ticks(ax.xaxis, col_names, rotation=30)
        label_ticks(ax.yaxis, row_names if row_labels else [""] * len(row_names))
    ax.set_title(title, fontsize=9)
    for i in range(matrix.shape[0] if annotate else 0):
        for j in range(matrix.shape[1]):
            value = matrix[i, j]
            if np.isfinite(value):
                red, green, blue, _ = image.cmap(image.norm(value))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # perceived brightness of the cell
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
    return image


def _mark_uniform_weight(bar, num_experts: int) -> None:
    """Readout weights are drawn on their whole range, 0 to 1: a scale stretched to the largest weight
    makes small differences look large. The colour bar marks the uniform weight 1/E to read them against."""
    uniform = 1.0 / num_experts
    bar.ax.axhline(uniform, color="red", lw=1.5)
    ticks = sorted({0.0, 0.5, 1.0, uniform})
    label_ticks(bar.ax.yaxis, [f"1/{num_experts}" if t == uniform else f"{t:g}" for t in ticks], ticks, fontsize=10)
    bar.set_label(f"readout weight (red: uniform, 1/{num_experts})")


def plot_weight_by_class(weights_ce: np.ndarray, class_names: Sequence[str], expert_names: Sequence[str],
                         path: str | Path, title: str = "readout weight per expert, by class") -> Path:
    fig = Figure(figsize=(_label_width(class_names) + 1.4 + 0.9 * len(expert_names), 1.0 + 0.35 * len(class_names)),
                 layout="constrained")
    ax = fig.subplots()
    image = heatmap(ax, weights_ce, class_names, expert_names, title, vmin=0.0, vmax=1.0)
    _mark_uniform_weight(fig.colorbar(image, ax=ax), len(expert_names))
    return save_figure(fig, path)


def plot_similarity(similarity_ee: np.ndarray, expert_names: Sequence[str], path: str | Path,
                    title: str = "cosine similarity of expert outputs") -> Path:
    return plot_similarity_grid({title: (similarity_ee, expert_names)}, path)


def _label_width(names: Sequence[str]) -> float:
    """Inches the longest of these tick labels takes at the heatmaps' 8-point font."""
    return 0.065 * max((len(name) for name in names), default=0)


def _panel_grid(count: int, width: float, height: float, label_width: float):
    """A figure of ``count`` panels, at most 4 a row, ``label_width`` inches for the row names and an inch
    for a colour bar; returns it, the panels (the unused ones hidden) and the number of columns."""
    cols = min(count, 4)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols + label_width + 1.0, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count], cols


def plot_similarity_grid(panels: dict[str, tuple[np.ndarray, Sequence[str]]], path: str | Path) -> Path:
    """One heatmap per entry ``title -> (matrix, expert names)``, side by side, on a shared -1..1 scale."""
    names_width = max(_label_width(names) for _, names in panels.values())
    fig, axes, _ = _panel_grid(len(panels), 2.6 + names_width, 3.0, 0.0)
    for ax, (title, (matrix, names)) in zip(axes, panels.items()):
        image = heatmap(ax, matrix, names, names, title, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="cosine similarity")
    return save_figure(fig, path)


def plot_weight_grid(panels: dict[str, tuple[np.ndarray, Sequence[str]]], class_names: Sequence[str],
                     path: str | Path) -> Path:
    """One class x expert readout-weight heatmap per entry ``title -> (weights, expert names)``; the class
    names label the first panel of each row."""
    most_experts = max(len(names) for _, names in panels.values())
    fig, axes, cols = _panel_grid(len(panels), 0.7 + 0.6 * most_experts, 0.9 + 0.35 * len(class_names),
                                  _label_width(class_names))
    for index, (ax, (title, (weights, names))) in enumerate(zip(axes, panels.items())):
        image = heatmap(ax, weights, class_names, names, title, vmin=0.0, vmax=1.0, row_labels=index % cols == 0)
    bar = fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="readout weight")
    expert_counts = {len(names) for _, names in panels.values()}
    if len(expert_counts) == 1:
        _mark_uniform_weight(bar, expert_counts.pop())
    return save_figure(fig, path)


def window_spans(num_frames: int, burst_frames: int, rate: int, windows: int) -> list[tuple[int, int]]:
    """[start, end) frames of each of a rate's ``windows`` sampler windows: over the clip, or for a multirate
    clip over its segment part, then, for a fast group, which reads every burst frame unpooled and then the
    changes between consecutive ones (docs/model.md#multirate-clips-in-the-head), each frame on its own and
    each change over its two frames."""
    split = num_frames - burst_frames
    spans = [(start, min(start + rate, split)) for start in range(0, split, rate)]
    if windows > len(spans):
        spans += [(frame, frame + 1) for frame in range(split, num_frames)]
        spans += [(frame - 1, frame + 1) for frame in range(split + 1, num_frames)]
    return spans


def plot_keep_positions(spec: Specialisation, rates: Sequence[int], class_names: Sequence[str], path: str | Path,
                        clips_per_class: int = 1) -> Path:
    """Which frame each rate's sampler kept, over time: one row per example clip (the first
    ``clips_per_class`` of each class), plus the fraction of all clips keeping each frame."""
    if not spec.keep_indices:
        raise ValueError("this model has no content-aware sampler: there are no keep positions to plot")
    examples = [int(i) for c in range(len(class_names)) for i in np.flatnonzero(spec.labels_n == c)[:clips_per_class]]
    num_frames = spec.num_frames
    fig = Figure(figsize=(max(6.0, 0.25 * num_frames), 1.1 * (len(examples) + 1) + 1.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(examples) + 1, 1, sharex=True))
    for ax, clip in zip(axes, examples):
        for row, (rate, keep_nw) in enumerate(zip(rates, spec.keep_indices)):
            spans = window_spans(num_frames, spec.burst_frames, rate, keep_nw.shape[1])
            for start, end in spans[::2]:  # window spans, alternately shaded
                ax.axvspan(start - 0.5, end - 0.5, ymin=row / len(rates), ymax=(row + 1) / len(rates),
                           color="0.9", lw=0)
            ax.scatter(keep_nw[clip], np.full(keep_nw.shape[1], row), s=14, color=f"C{row}")
        label_ticks(ax.yaxis, [f"r={r}" for r in rates], fontsize=7)
        ax.set_ylim(-0.5, len(rates) - 0.5)
        ax.set_title(f"clip {clip}: {class_names[spec.labels_n[clip]]} "
                     f"(predicted {class_names[spec.predictions_n[clip]]})", fontsize=8)
    # rows as in the panels above (the first rate at the bottom); the colour bar goes below, so that the
    # panel keeps the width, and the frame axis, of the panels above it
    image = axes[-1].imshow(keep_histogram(spec), aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, origin="lower",
                            extent=(-0.5, num_frames - 0.5, -0.5, len(rates) - 0.5))
    label_ticks(axes[-1].yaxis, [f"r={r}" for r in rates], fontsize=7)
    axes[-1].set_title(f"fraction of all {len(spec.labels_n)} clips keeping each frame", fontsize=8)
    axes[-1].set_xlabel("frame index" + (" (the burst part after the dashed line)" if spec.burst_frames else ""))
    if spec.burst_frames:
        for ax in axes:
            ax.axvline(num_frames - spec.burst_frames - 0.5, color="0.3", ls="--", lw=0.8)
    fig.colorbar(image, ax=axes[-1], location="bottom", shrink=0.5, aspect=40,
                 label="fraction of clips in which the rate's sampler kept the frame")
    return save_figure(fig, path)


def plot_accuracy_by_variant(accuracy_by_variant: dict[str, Sequence[float]], path: str | Path,
                             chance: Optional[float] = None, title: str = "top-1 by variant",
                             ylabel: str = "top-1") -> Path:
    """Bar of the mean per variant with every seed's value as a dot; ``ylabel`` names the measure."""
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
    label_ticks(ax.xaxis, names, rotation=30)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
