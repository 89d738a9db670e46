"""``bench/temporal.py`` without training: the frequency benchmark's settings and the check of the
issue's target."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from vidprism_ds.analysis.benchmark_report import RunRecord

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_temporal", REPO / "bench" / "temporal.py")
temporal = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = temporal  # dataclasses look their module up while the file runs
_spec.loader.exec_module(temporal)


def test_frequency_settings_keep_a_sparse_base_of_long_videos_and_bursts():
    settings = temporal.choose_settings(temporal.parse_args(["--frequency"]))
    assert settings.name == "frequency" and settings.dataset == "frequency"
    assert settings.variants == ("meanpool", "segment", "dense", "multirate", "homogeneous-multirate",
                                 "homogeneous+fusion-multirate")
    assert (settings.source_frames, settings.base_frames, settings.frames) == (96, 16, 16)
    assert "--burst-length" in settings.shard_options and settings.seeds == (0, 1, 2) and settings.steps == 3000
    assert all(variant in temporal.VARIANTS for variant in settings.variants)
    smoke = temporal.choose_settings(temporal.parse_args(["--frequency", "--smoke"]))
    assert smoke.variants == ("meanpool", "segment", "multirate") and smoke.steps == 2 and smoke.source_frames == 96
    assert temporal.class_names_of("frequency")[:2] == ["blinks 4 times", "blinks 12 times"]
    with pytest.raises(SystemExit):
        temporal.choose_settings(temporal.parse_args(["--frequency", "--heldout"]))


def _record(variant, per_class_correct):
    confusion = np.zeros((8, 8), dtype=int)
    for c, correct in enumerate(per_class_correct):
        confusion[c, c] = correct
        confusion[c, (c + 1) % 4 if c < 4 else 4 + (c + 1) % 4] = 4 - correct
    return RunRecord(variant=variant, seed=0, confusion=confusion.tolist(), weight_by_class=[[1.0]] * 8,
                     similarity=[[1.0]], expert_names=["x"])


def test_frequency_summary_checks_the_target_on_both_class_groups():
    segment = _record("segment", [1, 1, 1, 1, 4, 4, 4, 4])  # 25% blink, 100% order
    good = _record("multirate", [3, 3, 3, 3, 4, 4, 4, 4])  # 75%, 100%
    text = temporal.frequency_summary([segment, good])
    assert "blink classes: 75.0% vs 25.0% (+50.0 points; seeds: multirate 75.0, segment 25.0)" in text
    assert "target met" in text
    worse_order = _record("multirate", [4, 4, 4, 4, 3, 3, 3, 3])  # order 75%: 25 points below segment
    assert "(-25.0 points;" in temporal.frequency_summary([segment, worse_order])
    assert "target not met" in temporal.frequency_summary([segment, worse_order])
    assert temporal.frequency_summary([segment]) == ""


def test_multirate_variants_add_a_burst_as_long_as_the_segment_clip(tmp_path):
    settings = temporal.choose_settings(temporal.parse_args(["--frequency"]))
    data = temporal.PreparedData(tmp_path / "train", tmp_path / "val", tmp_path / "labels.txt", ["a", "b"])
    (tmp_path / "labels.txt").write_text("a\nb\n")
    for variant in ("segment", "dense", "multirate", "homogeneous+fusion-multirate"):
        cfg = temporal.run_config(settings, data, variant, 0, tmp_path / variant)
        if "multirate" in variant:
            assert (cfg.data.num_frames, cfg.data.multirate_burst_frames) == (32, 16)
        else:
            assert cfg.data.num_frames == 16


def test_a_table_assembled_from_separate_runs_says_how_they_ran():
    settings = temporal.FREQUENCY
    names = temporal.class_names_of("frequency")
    whole = temporal.benchmark_spec(settings, "cmd", 600.0, names, load="1.0 / 2.0")
    assert whole.settings["wall time"] == ("10.0 min for the whole table (data preparation included); "
                                           "1-minute load average at start / end: 1.0 / 2.0")
    assembled = temporal.benchmark_spec(settings, "cmd", 600.0, names, timing="6 runs, one at a time")
    assert assembled.settings["wall time"] == "6 runs, one at a time"
    assert "16 segment + 16 burst frames" in whole.settings["videos"]
