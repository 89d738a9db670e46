"""An evaluation's files: ``metrics.json`` and the confusion matrix figure."""

from __future__ import annotations

import json
from pathlib import Path

# Imported with the trainer, before the first step, rather than at the first report: importing matplotlib
# enters warnings.catch_warnings, which would make a warning already shown in training show again.
from matplotlib.figure import Figure

from vidprism_ds.analysis.eval_result import EvalResult, reported_top_k, top_k_text
from vidprism_ds.analysis.plots import heatmap, save_figure

# Above this many classes the confusion matrix's cells are too small for their numbers.
MAX_ANNOTATED_CLASSES = 20


def write_eval_report(result: EvalResult, class_names: list[str], out_dir: Path) -> None:
    """``metrics.json`` (top-k as ``reported_top_k`` allows, per-class accuracy) and ``confusion.png``
    (row-normalised, the fractions written in the cells up to ``MAX_ANNOTATED_CLASSES`` classes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    num_classes = result.num_classes
    names = list(class_names) if len(class_names) == num_classes else [str(i) for i in range(num_classes)]
    top_k = {f"top{k}": result.accuracy_by_k[k] for k in reported_top_k(num_classes)}
    (out_dir / "metrics.json").write_text(json.dumps({
        **top_k, "samples": result.samples, "damaged_samples": result.damaged_samples, "num_classes": num_classes,
        "per_class_accuracy": dict(zip(names, result.per_class_accuracy))}, indent=1))
    confusion = result.confusion.double()
    normalised = (confusion / confusion.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    size = min(20.0, 3.0 + 0.25 * num_classes)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    title = f"{top_k_text(result.accuracy_by_k, num_classes, digits=3, sep='  ')}  ({result.samples} videos)"
    image = heatmap(ax, normalised, names, names, title.strip(), vmin=0.0, vmax=1.0,
                    annotate=num_classes <= MAX_ANNOTATED_CLASSES, tick_labels=num_classes <= 50)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class's videos")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    save_figure(fig, out_dir / "confusion.png", dpi=100)
