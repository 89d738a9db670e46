"""Everything the specialisation tools write for one model: figures plus a JSON of the numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from vidprism_ds.analysis.collect import Specialisation
from vidprism_ds.analysis.metrics import (expert_similarity, keep_histogram, mean_off_diagonal, per_class_accuracy,
                                          top1, weight_by_class)
from vidprism_ds.analysis.plots import plot_keep_positions, plot_similarity, plot_weight_by_class


def _json_ready(matrix: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else round(float(v), 6) for v in row] for row in np.atleast_2d(matrix)]


def summarise(spec: Specialisation, class_names: Sequence[str], expert_names: Sequence[str],
              rates: Sequence[int] | None = None) -> dict:
    similarity = expert_similarity(spec)
    return {
        "clips": int(len(spec.labels_n)),
        "top1": top1(spec),
        "class_names": list(class_names),
        "expert_names": list(expert_names),
        "per_class_accuracy": _json_ready(per_class_accuracy(spec, len(class_names)))[0],
        "weight_by_class": _json_ready(weight_by_class(spec, len(class_names))),
        "expert_similarity": _json_ready(similarity),
        "mean_off_diagonal_similarity": mean_off_diagonal(similarity),
        "sampler_rates": list(rates) if rates else None,
        "keep_fraction_by_frame": _json_ready(keep_histogram(spec)) if rates and spec.keep_indices else None,
    }


def write_specialisation_report(spec: Specialisation, class_names: Sequence[str], expert_names: Sequence[str],
                                rates: Sequence[int] | None, out_dir: str | Path) -> dict[str, Path]:
    """Writes ``summary.json``, ``expert_weight_by_class.png``, ``expert_similarity.png`` and, when ``rates``
    names the content-aware samplers (``collect.sampler_rates``), ``keep_positions.png`` under ``out_dir``;
    returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(spec, class_names, expert_names, rates)
    paths = {"summary": out_dir / "summary.json"}
    paths["summary"].write_text(json.dumps(summary, indent=1), encoding="utf-8")
    paths["weights"] = plot_weight_by_class(weight_by_class(spec, len(class_names)), class_names, expert_names,
                                            out_dir / "expert_weight_by_class.png")
    paths["similarity"] = plot_similarity(expert_similarity(spec), expert_names, out_dir / "expert_similarity.png")
    if spec.keep_indices and rates:
        paths["keep"] = plot_keep_positions(spec, rates, class_names, out_dir / "keep_positions.png")
    return paths
