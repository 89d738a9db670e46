import numpy as np
import pytest

from vidprism_ds.analysis.benchmark_report import (BenchmarkSpec, RunRecord, best_variant, load_records,
                                                   render_markdown, save_records, splice_section, summary_rows,
                                                   update_report, write_figures)

CLASSES = ["right", "left", "right back", "left back"]
SPEC = BenchmarkSpec(title="toy", class_names=CLASSES, factors={"rate": [0, 0, 1, 1], "direction": [0, 1, 0, 1]},
                     variant_notes={"a": "first", "b": "second"}, command="python bench/temporal.py",
                     settings={"steps": 3})


def _record(variant, seed, confusion, experts=2):
    return RunRecord(variant=variant, seed=seed, confusion=confusion,
                     weight_by_class=np.full((4, experts), 1 / experts).tolist(),
                     similarity=np.eye(experts).tolist(), expert_names=[f"e{i}" for i in range(experts)],
                     tokens_per_expert=[3, 1][:experts], train_seconds=2.0, steps=3)


# "b" gets the rate factor always right and the direction never (right<->left, rb<->lb swapped)
SWAP_DIRECTION = [[0, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 2], [0, 0, 2, 0]]
PERFECT = (2 * np.eye(4, dtype=int)).tolist()


def test_accuracies_from_the_confusion_matrix():
    record = _record("b", 0, SWAP_DIRECTION)
    assert record.top1 == 0.0
    assert record.factor_accuracy(SPEC.factors["rate"]) == 1.0
    assert record.factor_accuracy(SPEC.factors["direction"]) == 0.0
    np.testing.assert_allclose(_record("a", 0, PERFECT).per_class_accuracy(), 1.0)


def test_rows_tables_and_best_variant():
    records = [_record("a", 1, PERFECT), _record("a", 0, SWAP_DIRECTION), _record("b", 0, SWAP_DIRECTION, 1)]
    rows = summary_rows(SPEC, records)
    assert [r["variant"] for r in rows] == ["a", "b"]
    assert rows[0]["seeds"] == [0, 1] and rows[0]["top1"] == [0.0, 1.0] and rows[0]["top1_mean"] == 0.5
    assert rows[0]["factors"] == {"rate": 1.0, "direction": 0.5}
    assert rows[0]["similarity_off_diagonal"] == 0.0 and np.isnan(rows[1]["similarity_off_diagonal"])
    assert best_variant(records) == "a" and best_variant(records, exclude=["a"]) == "b"
    text = render_markdown(SPEC, records, {"accuracy": "results/acc.png"})
    table_rows = [line for line in text.splitlines() if line.startswith("| a |") or line.startswith("| b |")]
    assert len(table_rows) == 6  # three tables, one row per variant each
    assert "| a | first | 50.0 | 0.0-100.0 | 0.0, 100.0 | 2 |" in text
    assert "![top-1 by variant](results/acc.png)" in text


def test_records_round_trip_and_figures(tmp_path):
    records = [_record("a", 0, PERFECT), _record("b", 0, SWAP_DIRECTION)]
    assert load_records(save_records(records, tmp_path / "runs.json")) == records
    paths = write_figures(SPEC, records, tmp_path / "figs", prefix="toy_")
    assert sorted(p.name for p in paths.values()) == ["toy_accuracy_by_variant.png", "toy_expert_similarity.png",
                                                      "toy_expert_weight_by_class.png"]


def test_splice_keeps_the_hand_written_text_and_replaces_only_its_section():
    doc = "# Results\n\nreading before\n"
    once = splice_section(doc, "temporal", "table v1")
    twice = splice_section(once + "\nreading after\n", "temporal", "table v2")
    assert twice.startswith("# Results\n\nreading before\n") and twice.endswith("reading after\n")
    assert "table v2" in twice and "table v1" not in twice
    both = splice_section(twice, "heldout", "held-out table")
    renewed = splice_section(both, "heldout", "new")
    assert renewed.count("table v2") == 1 and "held-out table" not in renewed and "new" in renewed


def test_update_report_creates_the_file_with_a_header(tmp_path):
    path = update_report(tmp_path / "docs" / "results.md", "temporal", "rows", header=lambda: "# Title\n")
    assert path.read_text() == "# Title\n\n<!-- generated:temporal:begin -->\nrows\n<!-- generated:temporal:end -->\n"


GROUPED = BenchmarkSpec(title="grouped", class_names=CLASSES, factors={}, variant_notes={}, command="c", settings={},
                        class_groups={"steady": [0, 1], "out and back": [2, 3]})
# right always right, left always taken for right; the out-and-back pair half right each
HALF_STEADY = [[2, 0, 0, 0], [2, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_class_groups_get_mean_per_class_accuracy_per_seed_with_a_table_and_a_figure(tmp_path):
    records = [_record("a", 0, HALF_STEADY), _record("a", 1, PERFECT)]
    assert records[0].group_accuracy([0, 1]) == 0.5 and records[0].group_accuracy([2, 3]) == 0.5
    rows = summary_rows(GROUPED, records)
    assert rows[0]["groups"] == {"steady": [0.5, 1.0], "out and back": [0.5, 1.0]}
    paths = write_figures(GROUPED, records, tmp_path, prefix="g_")
    assert paths["group_out_and_back"].name == "g_accuracy_group_out_and_back.png"
    text = render_markdown(GROUPED, records, {role: f"results/{p.name}" for role, p in paths.items()})
    assert "| steady (chance 50.0): mean | min-max | per seed | out and back (chance 50.0): mean |" in text
    assert "| a | 75.0 | 50.0-100.0 | 50.0, 100.0 | 75.0 | 50.0-100.0 | 50.0, 100.0 |" in text
    assert "![out and back by variant](results/g_accuracy_group_out_and_back.png)" in text
    # without groups the table is not there
    assert "by class group" not in render_markdown(SPEC, records, {})


def test_accuracy_figures_name_their_measure_on_the_y_axis(monkeypatch, tmp_path):
    import vidprism_ds.analysis.plots as plots
    labels = {}
    monkeypatch.setattr(plots, "save_figure",
                        lambda fig, path, dpi=110: labels.update({path.name: fig.axes[0].get_ylabel()}) or path)
    write_figures(GROUPED, [_record("a", 0, HALF_STEADY)], tmp_path, prefix="g_")
    assert labels["g_accuracy_by_variant.png"] == "top-1"
    assert labels["g_accuracy_group_steady.png"] == "mean per-class accuracy"
