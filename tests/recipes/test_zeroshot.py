"""Zero-shot class selection: exact Kinetics overlap by index map, approximate name overlap, remapping."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.labels import k710_index_map, packaged_label_list
from vidprism_ds.recipes.listfile import ListLine
from vidprism_ds.recipes.zeroshot import (
    RULE_INDEX_MAP,
    RULE_NAME,
    RULE_NONE,
    normalise_class_name,
    remap_lines,
    restrict_to_names,
    zero_shot_classes,
)

K600 = packaged_label_list("k600")
UCF_EXCLUDED = {"Archery", "Bowling", "BrushingTeeth", "CleanAndJerk", "HammerThrow", "HighJump", "JavelinThrow",
                "JugglingBalls", "Knitting", "LongJump", "MoppingFloor", "PlayingCello", "PlayingFlute",
                "PlayingGuitar", "PlayingPiano", "PlayingViolin", "PoleVault", "PullUps", "Skiing", "TaiChi"}


def test_k600_novel_classes_by_index_map():
    selection = zero_shot_classes("k400", "k600")  # the standard protocol excludes for Kinetics targets
    assert selection.rule == RULE_INDEX_MAP
    assert len(selection.kept) == 218 and len(selection.excluded) == 382
    k400_rows = set(k710_index_map("k400"))
    k600_rows = k710_index_map("k600")
    assert all(k600_rows[i] not in k400_rows for i in selection.kept)
    assert selection.names == tuple(K600[i] for i in selection.kept)
    assert "acting in play" in selection.names
    # Renamed K400 classes are caught by the map although a name match would miss them.
    excluded = dict(selection.excluded)
    assert excluded["inflating balloons"] == "balloon blowing"
    assert excluded["sipping cup"] == "drinking"
    assert "inflating balloons" not in selection.names


def test_ucf_and_hmdb_keep_all_by_default_and_exclude_by_name_on_request():
    for target, size in (("ucf101", 101), ("hmdb51", 51)):
        standard = zero_shot_classes("k400", target)
        assert standard.rule == RULE_NONE and len(standard.kept) == size and not standard.excluded
    ucf = zero_shot_classes("k400", "ucf101", exclude_overlap=True)
    assert ucf.rule == RULE_NAME
    assert {target for target, _ in ucf.excluded} == UCF_EXCLUDED
    assert dict(ucf.excluded)["Skiing"] == "skiing (not slalom or crosscountry)"
    assert len(ucf.kept) == 81
    hmdb = zero_shot_classes("k400", "hmdb51", exclude_overlap=True)
    assert hmdb.excluded == (("situp", "situp"),)
    assert len(zero_shot_classes("k400", "k600", exclude_overlap=False).kept) == 600


@pytest.mark.parametrize("name, normalised", [
    ("ApplyEyeMakeup", "apply eye makeup"),
    ("brush_hair", "brush hair"),
    ("skiing (not slalom or crosscountry)", "skiing"),
    ("climbing a rope", "climbing rope"),
    ("YoYo", "yo yo"),
])
def test_normalise_class_name(name, normalised):
    assert normalise_class_name(name) == normalised


def test_remap_lines_renumbers_in_target_order_and_drops_excluded():
    selection = zero_shot_classes("k400", "k600")
    acting = K600.index("acting in play")
    balloons = K600.index("inflating balloons")
    last_kept = selection.kept[-1]
    lines = [ListLine("a b.mp4", acting, 1), ListLine("c.mp4", balloons, 2), ListLine("d.mp4", last_kept, 3)]
    rows, dropped = remap_lines(lines, selection)
    assert dropped == 1
    assert rows == [("a b.mp4", selection.kept.index(acting)), ("d.mp4", 217)]
    assert selection.names[rows[0][1]] == "acting in play"
    with pytest.raises(RecipeError, match="label 600 is out of range for k600"):
        remap_lines([ListLine("e.mp4", 600, 4)], selection)


def test_restrict_to_names():
    selection = zero_shot_classes("k400", "k600")
    subset = restrict_to_names(selection, ["acting in play", selection.names[-1]])
    assert subset.names == ("acting in play", selection.names[-1])
    assert subset.kept == (K600.index("acting in play"), selection.kept[-1])
    with pytest.raises(RecipeError, match="not among the 218 evaluated"):
        restrict_to_names(selection, ["inflating balloons"])


def test_cli_writes_remapped_list_and_class_names(tmp_path):
    # Run from outside the checkout: the installed package must find its label lists.
    val = tmp_path / "k600_val.txt"
    val.write_text(f"val/x 1.mp4 {K600.index('acting in play')}\nval/y.mp4 {K600.index('abseiling')}\n")
    done = subprocess.run([sys.executable, "-m", "vidprism_ds.recipes.zeroshot", "--target", "k600",
                           "--list", str(val), "--out", str(tmp_path / "zs.txt"),
                           "--labels-out", str(tmp_path / "classes.txt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "k600: evaluating 218 classes, 382 excluded" in done.stdout
    classes = (tmp_path / "classes.txt").read_text().splitlines()
    assert len(classes) == 218
    (line,) = (tmp_path / "zs.txt").read_text().splitlines()
    path, label = line.rsplit(" ", 1)
    assert path == "val/x 1.mp4" and classes[int(label)] == "acting in play"
    assert done.stderr == ""  # no runpy double-import warning
