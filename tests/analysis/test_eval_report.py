import json
import warnings

import pytest
import torch

from vidprism_ds.analysis.eval_report import write_eval_report
from vidprism_ds.train.evaluate import EvalAccumulator


def _result(num_classes: int):
    acc = EvalAccumulator(num_classes)
    labels = torch.arange(2 * num_classes) % num_classes
    probs = torch.full((len(labels), num_classes), 0.1)
    probs[torch.arange(len(labels)), labels] = 0.9  # every video right ...
    probs[1] = torch.linspace(1.0, 0.0, num_classes)  # ... but the first of class 1, predicted as class 0
    acc.add(probs, labels, torch.ones(len(labels), dtype=torch.bool))
    return acc.reduce(dp_size=1)


@pytest.mark.parametrize("num_classes", [4, 6])
def test_eval_report_writes_meaningful_top_k_and_numbers_in_the_confusion_cells(tmp_path, monkeypatch, num_classes):
    import vidprism_ds.analysis.eval_report as report_module

    figures = []
    monkeypatch.setattr(report_module, "save_figure", lambda fig, path, dpi=110: figures.append((fig, path)))
    names = [f"class {c}" for c in range(num_classes)]
    write_eval_report(_result(num_classes), names, tmp_path)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert ("top5" in metrics) == (num_classes > 5) and metrics["num_classes"] == num_classes
    assert metrics["per_class_accuracy"]["class 1"] == 0.5
    (fig, path), = figures
    assert path == tmp_path / "confusion.png"
    matrix_ax, bar_ax = fig.axes  # the matrix and its colour bar
    assert "fraction" in bar_ax.get_ylabel()
    cells = [text.get_text() for text in matrix_ax.texts]
    assert len(cells) == num_classes ** 2
    assert cells[num_classes] == "0.50"  # row "class 1", column "class 0": half of class 1 predicted as 0
    assert ("top-5" in matrix_ax.get_title()) == (num_classes > 5)


def test_an_evaluation_report_does_not_make_python_repeat_a_warning(tmp_path):
    """A library warning of the training step (DeepSpeed's, in real runs) is shown once per process; a
    report that reset Python's memory of shown warnings made it come back after every evaluation."""

    def training_step():
        warnings.warn("a library's deprecation notice", FutureWarning)

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")  # Python's own: once per place
        training_step()
        write_eval_report(_result(4), [], tmp_path / "epoch_001")
        training_step()
        write_eval_report(_result(4), [], tmp_path / "epoch_002")
        training_step()
    assert [str(w.message) for w in shown] == ["a library's deprecation notice"]
