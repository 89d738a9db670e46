"""``bench/temporal.py --smoke``: trains 3 variants for a few steps with the real trainer and writes the
report (tables spliced between markers, figures, run records)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "temporal.py"


def _run(*args, timeout=300):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _table_rows(text: str, heading: str) -> list[str]:
    """First cell of every data row of the table under ``heading``."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("####") or line.startswith("!["):
            break
        if line.startswith("| ") and not line.startswith("| variant") and not line.startswith("| ---"):
            rows.append(line.split("|")[1].strip())
    return rows


@pytest.mark.slow
def test_smoke_writes_the_report_with_one_row_per_variant(tmp_path):
    report, figures = tmp_path / "results.md", tmp_path / "results"
    report.write_text("# Results\n\nA hand-written reading that must survive.\n")
    _run("--smoke", "--report", str(report), "--figures", str(figures), "--work", str(tmp_path / "work"))

    text = report.read_text()
    assert text.startswith("# Results\n\nA hand-written reading that must survive.\n")
    assert text.count("<!-- generated:smoke:begin -->") == 1 and text.count("<!-- generated:smoke:end -->") == 1
    assert _table_rows(text, "#### Top-1") == ["meanpool", "homogeneous", "default"]
    assert _table_rows(text, "#### Per-class") == ["meanpool", "homogeneous", "default"]
    assert "factor: direction (right vs left)" in text and "moving right" in text

    records = json.loads((figures / "smoke_runs.json").read_text())
    assert [(r["variant"], r["seed"]) for r in records] == [("meanpool", 0), ("homogeneous", 0), ("default", 0)]
    for record in records:
        assert record["steps"] == 2 and sum(map(sum, record["confusion"])) == 8  # 2 val videos x 4 classes
    assert [len(r["expert_names"]) for r in records] == [1, 4, 4]
    for name in ("smoke_accuracy_by_variant.png", "smoke_expert_similarity.png", "smoke_expert_weight_by_class.png"):
        assert (figures / name).read_bytes()[:4] == b"\x89PNG"
        assert f"results/{name}" in text

    # the report is re-rendered from the saved records alone, without training
    report.write_text(text.replace("| meanpool |", "| edited |"))
    _run("--smoke", "--from-records", "--report", str(report), "--figures", str(figures))
    assert _table_rows(report.read_text(), "#### Top-1") == ["meanpool", "homogeneous", "default"]


@pytest.mark.slow
def test_heldout_smoke_compares_meanpool_with_the_chosen_variant(tmp_path):
    report, figures = tmp_path / "results.md", tmp_path / "results"
    _run("--heldout", "--smoke", "--best", "default", "--report", str(report),
         "--figures", str(figures), "--work", str(tmp_path / "work"))
    text = report.read_text()
    assert _table_rows(text, "#### Top-1") == ["meanpool", "default"]
    assert "Appearance-only ceiling: 12.5% (chance)" in text
    assert "factor: speed (steady vs fast)" in text
    records = json.loads((figures / "heldout_runs.json").read_text())
    assert all(sum(map(sum, r["confusion"])) == 16 for r in records)  # 2 val videos x 8 classes


@pytest.mark.slow
def test_frequency_pairs_smoke_reports_every_pair_and_the_target(tmp_path):
    report, figures = tmp_path / "results.md", tmp_path / "results"
    _run("--frequency-pairs", "--smoke", "--report", str(report), "--figures", str(figures),
         "--work", str(tmp_path / "work"))
    text = report.read_text()
    assert _table_rows(text, "#### Top-1") == ["segment", "multirate"]
    assert "#### Per pair (%)" in text and "| multirate | 16/32 | no |" in text
    assert "target met" in text or "target not met" in text
    records = json.loads((figures / "frequency_pairs_runs.json").read_text())
    assert all(sum(map(sum, r["confusion"])) == 16 for r in records)  # 2 val videos x 8 classes
    # the multirate head's fast groups read the 16 burst frames and their 15 changes
    assert records[1]["tokens_per_expert"] == [8 + 31, 4 + 31, 2, 1]
