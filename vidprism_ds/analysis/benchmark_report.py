"""The temporal benchmark's report: per-run records -> tables in docs/results.md and PNG figures.

``bench/temporal.py`` trains the variants and hands one ``RunRecord`` per (variant, seed) to
``render_markdown`` / ``write_figures``; ``splice_section`` replaces only the text between a section's
``<!-- generated:NAME:begin -->`` and ``<!-- generated:NAME:end -->`` markers, so the hand-written
reading of the figures around them survives a regeneration.

Classes of a temporal benchmark are combinations of temporal *factors* (synthetic: rate = steady or out
and back, direction = right or left). A factor's accuracy is the fraction of clips whose predicted
class has the true value of that factor, which says which kind of temporal information a variant
recovers even where it confuses whole classes.

A benchmark can also name *class groups* (the frequency benchmark: the blink classes and the order
classes). A group's accuracy is the mean per-class accuracy over its classes, per seed, so the tables
show its spread over seeds and two groups of one table can be read apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vidprism_ds.analysis.metrics import mean_off_diagonal
from vidprism_ds.analysis.plots import plot_accuracy_by_variant, plot_similarity_grid, plot_weight_grid


@dataclass
class RunRecord:
    """One trained (variant, seed): evaluation results on the validation split."""

    variant: str
    seed: int
    confusion: list[list[int]]  # (C, C) counts, row = true class, column = predicted
    weight_by_class: list[list[float]]  # (C, E) mean readout weight per expert, per true class
    similarity: list[list[float]]  # (E, E) mean cosine between experts' pooled outputs
    expert_names: list[str]
    tokens_per_expert: list[int] = field(default_factory=list)  # stream length each expert reads
    train_seconds: float = 0.0
    steps: int = 0

    @property
    def confusion_cc(self) -> np.ndarray:
        return np.asarray(self.confusion, dtype=np.float64)

    @property
    def top1(self) -> float:
        conf = self.confusion_cc
        return float(np.trace(conf) / conf.sum())

    def per_class_accuracy(self) -> np.ndarray:
        conf = self.confusion_cc
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(conf) / conf.sum(axis=1)

    def factor_accuracy(self, factor_of_class: Sequence[int]) -> float:
        """Fraction of clips whose prediction has the true class's value of the factor."""
        conf = self.confusion_cc
        factor = np.asarray(factor_of_class)
        same = factor[:, None] == factor[None, :]
        return float((conf * same).sum() / conf.sum())

    def group_accuracy(self, class_ids: Sequence[int]) -> float:
        """Mean per-class accuracy over ``class_ids`` (classes without validation clips left out)."""
        return float(np.nanmean(self.per_class_accuracy()[list(class_ids)]))


def save_records(records: Sequence[RunRecord], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in records], indent=1), encoding="utf-8")
    return path


def load_records(path: str | Path) -> list[RunRecord]:
    return [RunRecord(**row) for row in json.loads(Path(path).read_text(encoding="utf-8"))]


@dataclass(frozen=True)
class BenchmarkSpec:
    """What the tables need to know about a benchmark beyond the records."""

    title: str
    class_names: Sequence[str]
    # factor name -> value of the factor for each class id
    factors: dict[str, Sequence[int]]
    variant_notes: dict[str, str]  # variant -> what it changes (one line)
    command: str
    settings: dict  # shown as a list of key: value
    # group name -> its class ids (a table and a figure each; chance inside a group is 1 / its size)
    class_groups: dict[str, Sequence[int]] = field(default_factory=dict)


def by_variant(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records grouped by variant, variants in first-seen order, seeds ascending."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.variant, []).append(record)
    return {name: sorted(runs, key=lambda r: r.seed) for name, runs in groups.items()}


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{100 * value:.1f}"


def _mean_spread(values: Sequence[float]) -> tuple[str, str]:
    values = np.asarray(values, dtype=np.float64)
    mean = _pct(values.mean())
    spread = f"{_pct(values.min())}-{_pct(values.max())}" if len(values) > 1 else "-"
    return mean, spread


def _mean_matrix(runs: Sequence[RunRecord], attribute: str) -> np.ndarray:
    return np.nanmean(np.stack([np.asarray(getattr(r, attribute), dtype=np.float64) for r in runs]), axis=0)


def summary_rows(spec: BenchmarkSpec, records: Sequence[RunRecord]) -> list[dict]:
    """One dict per variant with the numbers the tables show (also used by tests and the reading)."""
    rows = []
    for name, runs in by_variant(records).items():
        similarity = _mean_matrix(runs, "similarity")
        rows.append({
            "variant": name,
            "seeds": [r.seed for r in runs],
            "top1": [r.top1 for r in runs],
            "top1_mean": float(np.mean([r.top1 for r in runs])),
            "per_class": np.nanmean(np.stack([r.per_class_accuracy() for r in runs]), axis=0).tolist(),
            "factors": {f: float(np.mean([r.factor_accuracy(values) for r in runs]))
                        for f, values in spec.factors.items()},
            "groups": {g: [r.group_accuracy(ids) for r in runs] for g, ids in spec.class_groups.items()},
            "similarity_off_diagonal": mean_off_diagonal(similarity),
            "weights": np.nanmean(_mean_matrix(runs, "weight_by_class"), axis=0).tolist(),
            "expert_names": runs[0].expert_names,
            "tokens_per_expert": runs[0].tokens_per_expert,
            "train_seconds": float(np.mean([r.train_seconds for r in runs])),
            "steps": runs[0].steps,
        })
    return rows


def best_variant(records: Sequence[RunRecord], exclude: Sequence[str] = ()) -> str:
    """The variant with the highest mean top-1 (ties: first seen)."""
    rows = {name: np.mean([r.top1 for r in runs]) for name, runs in by_variant(records).items() if name not in exclude}
    return max(rows, key=lambda name: rows[name])


def render_markdown(spec: BenchmarkSpec, records: Sequence[RunRecord], figures: dict[str, str]) -> str:
    """The generated section: setup, top-1, per-class and factor accuracy, similarity, readout weights.

    ``figures`` maps a figure's role to its path relative to the markdown file."""
    rows = summary_rows(spec, records)
    chance = 1.0 / len(spec.class_names)
    lines = [f"### {spec.title}", "", f"Command: `{spec.command}`", ""]
    lines += [f"- {key}: {value}" for key, value in spec.settings.items()]
    if spec.class_groups:  # the groups may look different; inside one only time tells the classes apart
        lines += ["", f"Chance = {_pct(chance)}%; inside a class group, chance (and what appearance alone allows) is "
                  "1 / the group's number of classes.", ""]
    else:
        lines += ["", f"Chance (and the accuracy appearance alone allows) = {_pct(chance)}%.", ""]

    lines += ["#### Top-1 (%) on the validation videos", "",
              "| variant | what it changes | mean | min-max | per seed | train s/run |",
              "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        mean, spread = _mean_spread(row["top1"])
        per_seed = ", ".join(_pct(v) for v in row["top1"])
        lines.append(f"| {row['variant']} | {spec.variant_notes.get(row['variant'], '')} | {mean} | {spread} | "
                     f"{per_seed} | {row['train_seconds']:.0f} |")
    if "accuracy" in figures:
        lines += ["", f"![top-1 by variant]({figures['accuracy']})"]
    if spec.class_groups:
        lines += [""] + _group_table(spec, rows, figures)

    factor_names = list(spec.factors)
    lines += ["", "#### Per-class and per-factor accuracy (%), mean over seeds", "",
              "A factor's accuracy counts a prediction right when its class has the true value of that factor "
              "(chance 50% for a two-valued factor).", "",
              "| variant | " + " | ".join(spec.class_names) + " | " + " | ".join(f"factor: {f}" for f in factor_names)
              + " |",
              "| --- " * (1 + len(spec.class_names) + len(factor_names)) + "|"]
    for row in rows:
        cells = [_pct(v) for v in row["per_class"]] + [_pct(row["factors"][f]) for f in factor_names]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")

    lines += ["", "#### Experts: output similarity and readout weight, mean over seeds and classes", "",
              "Similarity: cosine between two experts' mean output tokens for the same clip, averaged over "
              "clips and expert pairs (1 = the experts say the same thing). Readout weight: attention mass "
              "the readout query puts on each expert's tokens; an expert reading L of the N tokens gets L/N "
              "under uniform attention (the token share).", "",
              "| variant | mean off-diagonal similarity | readout weight per expert | token share |",
              "| --- | --- | --- | --- |"]
    for row in rows:
        weights = ", ".join(f"{n}: {w:.2f}" for n, w in zip(row["expert_names"], row["weights"]))
        tokens = row["tokens_per_expert"]
        share = ", ".join(f"{t / sum(tokens):.2f}" for t in tokens) if tokens and sum(tokens) else "-"
        similarity = "-" if not np.isfinite(row["similarity_off_diagonal"]) else f"{row['similarity_off_diagonal']:.2f}"
        lines.append(f"| {row['variant']} | {similarity} | {weights} | {share} |")
    for role, caption in (("similarity", "expert-output similarity"), ("weights", "readout weight by class")):
        if role in figures:
            lines += ["", f"![{caption}]({figures[role]})"]
    return "\n".join(lines) + "\n"


def _group_table(spec: BenchmarkSpec, rows: Sequence[dict], figures: dict[str, str]) -> list[str]:
    """Mean per-class accuracy of each class group: mean and min-max over seeds."""
    names = list(spec.class_groups)
    lines = ["#### Mean per-class accuracy by class group (%)", "",
             "Per seed, the mean of the group's per-class accuracies; then mean, min-max and per-seed values over "
             "seeds. Chance inside a group is 1 / its number of classes.", "",
             "| variant | " + " | ".join(f"{g} (chance {_pct(1.0 / len(spec.class_groups[g]))}): mean | min-max | "
                                      "per seed" for g in names) + " |",
             "| --- " * (1 + 3 * len(names)) + "|"]
    for row in rows:
        cells = []
        for name in names:
            values = row["groups"][name]
            cells += [*_mean_spread(values), ", ".join(_pct(v) for v in values)]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += [f"\n![{name} by variant]({figures[_group_role(name)]})" for name in names if _group_role(name) in figures]
    return lines


def _group_role(name: str) -> str:
    """The figure role (and file name part) of a class group."""
    return "group_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write_figures(spec: BenchmarkSpec, records: Sequence[RunRecord], figure_dir: str | Path,
                  prefix: str = "") -> dict[str, Path]:
    """accuracy by variant (top-1 and each class group's), similarity matrices and weight-by-class heatmaps
    (means over seeds)."""
    figure_dir = Path(figure_dir)
    groups = by_variant(records)
    paths = {"accuracy": plot_accuracy_by_variant({n: [r.top1 for r in runs] for n, runs in groups.items()},
                                                  figure_dir / f"{prefix}accuracy_by_variant.png",
                                                  chance=1.0 / len(spec.class_names), title=spec.title)}
    for group, class_ids in spec.class_groups.items():
        role = _group_role(group)
        paths[role] = plot_accuracy_by_variant(
            {n: [r.group_accuracy(class_ids) for r in runs] for n, runs in groups.items()},
            figure_dir / f"{prefix}accuracy_{role}.png", chance=1.0 / len(class_ids),
            title=f"{spec.title}: {group}, mean per-class accuracy", ylabel="mean per-class accuracy")
    with_experts = {n: runs for n, runs in groups.items() if len(runs[0].expert_names) > 1}
    if with_experts:
        paths["similarity"] = plot_similarity_grid(
            {n: (_mean_matrix(runs, "similarity"), runs[0].expert_names) for n, runs in with_experts.items()},
            figure_dir / f"{prefix}expert_similarity.png")
        paths["weights"] = plot_weight_grid(
            {n: (_mean_matrix(runs, "weight_by_class"), runs[0].expert_names) for n, runs in with_experts.items()},
            spec.class_names, figure_dir / f"{prefix}expert_weight_by_class.png")
    return paths


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name}:begin -->", f"<!-- generated:{name}:end -->"


def splice_section(document: str, name: str, generated: str) -> str:
    """Replace the text between ``name``'s markers (or append the marked section if it is absent)."""
    begin, end = _markers(name)
    block = f"{begin}\n{generated.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: block, document, count=1)
    return document.rstrip() + ("\n\n" if document.strip() else "") + block + "\n"


def update_report(path: str | Path, name: str, generated: str, header: Callable[[], str] | None = None) -> Path:
    """Write ``generated`` into ``path``'s section ``name``; a new file starts with ``header()``."""
    path = Path(path)
    document = path.read_text(encoding="utf-8") if path.is_file() else (header() if header else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(splice_section(document, name, generated), encoding="utf-8")
    return path
