"""Kinetics-710 list building on the on-disk scenario (tests/recipes/kinetics_scenario.py)."""

from __future__ import annotations

import re

import pytest

from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.k710_report import format_summary
from vidprism_ds.recipes.kinetics import DatasetLabels, build_k710_lists, empty_classes
from vidprism_ds.recipes.labels import K710_CLASSES, k710_index_map, packaged_label_list

YOUTUBE_ID = re.compile(r"(yt_[A-Z0-9]+)")


def _by_id(rows):
    found = {}
    for path, label in rows:
        youtube_id = YOUTUBE_ID.search(path).group(1)
        assert youtube_id not in found, f"{youtube_id} listed twice"
        found[youtube_id] = (path.split("/")[0], label)
    return found


def test_renamed_class_maps_through_the_dataset_own_list():
    # K400 "balloon blowing" is class 12 of k400.txt; its K710 row is spelled "inflating balloons".
    k400, k600 = DatasetLabels("k400"), DatasetLabels("k600")
    assert packaged_label_list("k710")[k400.k710_row("balloon blowing")] == "inflating balloons"
    assert k400.k710_row("balloon blowing") == 12
    # K600's own name for it is class 229, which must land on the same K710 row, not on row 229.
    assert k600.class_index("inflating balloons") == 229 and k600.k710_row("inflating balloons") == 12
    # The K710 spelling is not a K400 class name: never joined across lists by name.
    assert k400.k710_row("inflating balloons") is None
    assert DatasetLabels("k700").k710_row("throwing ball (not baseball or American football)") == 357


def test_index_maps_are_one_to_one():
    for dataset, size in (("k400", 400), ("k600", 600), ("k700", 700)):
        index = k710_index_map(dataset)
        assert len(index) == size and len(set(index)) == size
    assert k710_index_map("k400") == tuple(range(400))  # the K400 classes come first


def test_scenario_counts_lists_and_labels(scenario, scenario_module):
    folders, root = scenario
    result = build_k710_lists({d: [p] for d, p in folders.items()}, root)

    assert result.counts == scenario_module.EXPECTED_COUNTS
    assert _by_id(result.train) == scenario_module.EXPECTED_TRAIN
    assert _by_id(result.val) == scenario_module.EXPECTED_VAL
    assert {(m.dataset, m.split, m.youtube_id) for m in result.missing} == scenario_module.EXPECTED_MISSING
    assert result.eval_ids == scenario_module.EXPECTED_EVAL_IDS
    assert {d: info["layout"] for d, info in result.layouts.items()} == scenario_module.LAYOUT_NAMES
    assert not set(_by_id(result.train)) & set(_by_id(result.val))
    assert result.warnings == []  # every dataset has test rows


def test_listed_paths_exist_and_keep_spaces(scenario):
    folders, root = scenario
    result = build_k710_lists(folders, root)
    for path, _ in result.train + result.val:
        assert (root / path).is_file(), path
    assert ("k400/train/balloon blowing/yt_A9_000010_000020.mp4", 12) in result.train
    assert ("k700/yt_C1.mp4", 357) in result.train


def test_conflict_reported_and_precedence_decides(scenario):
    folders, root = scenario
    default = build_k710_lists(folders, root)
    assert [(c["youtube_id"], c["kept_from"]) for c in default.conflicts] == [("yt_A7", "k700")]
    assert sorted(r["k710"] for r in default.conflicts[0]["rows"]) == [5, 100]
    assert dict(_by_id(default.train))["yt_A7"] == ("k700", 5)

    k400_first = build_k710_lists(folders, root, precedence=("k400", "k600", "k700"))
    train = _by_id(k400_first.train)
    assert train["yt_A7"] == ("k400", 100)  # K400 "drinking" -> K710 row 100 ("sipping cup")
    assert train["yt_A2"] == ("k400", 12)
    assert k400_first.counts["train"]["k400"]["duplicates"] == 1  # only the repeated yt_A6
    assert len(k400_first.train) == len(default.train)  # precedence moves rows, never adds or drops ids


def test_unknown_label_is_an_error_unless_lenient(tmp_path, scenario_module):
    # The K710 spelling in a K400 CSV is not a K400 class: it must not be matched by name.
    rows = scenario_module.ROWS + [scenario_module.Row("k400", "train", "yt_U1", "inflating balloons")]
    folders, root = scenario_module.write_scenario(tmp_path, rows)
    with pytest.raises(RecipeError, match=r"k400: 1 CSV label.*'inflating balloons'.*--lenient"):
        build_k710_lists(folders, root)
    lenient = build_k710_lists(folders, root, lenient=True)
    assert lenient.unknown_labels == {"k400": {"inflating balloons": 1}}
    assert lenient.counts["train"]["k400"]["unknown_label"] == 1
    assert lenient.counts["train"]["k400"]["rows"] == 11
    assert "yt_U1" not in _by_id(lenient.train)


def test_forced_layout_reports_everything_missing_where_it_does_not_match(scenario):
    folders, root = scenario
    result = build_k710_lists(folders, root, layout="flat")
    # Only K700 is stored flat; every other id's preferred copy is missing.
    listed = _by_id(result.train)
    assert set(listed) == {"yt_A7", "yt_C1"}
    assert result.counts["train"]["k400"]["kept"] == 0
    assert result.counts["train"]["k400"]["missing"] == 4  # A1, A4, A6, A9 (A8's K700 copy is ranked first)
    assert result.counts["train"]["k700"]["missing"] == 2  # A8 (no copy at all), C2


def test_custom_template_and_subdirs(tmp_path, scenario_module):
    folders, _ = scenario_module.write_scenario(tmp_path)
    root = tmp_path / "pool"
    for youtube_id in ("yt_A1", "yt_A2", "yt_B2", "yt_V1"):
        (root / "clips").mkdir(parents=True, exist_ok=True)
        (root / "clips" / f"{youtube_id}-10.mkv").touch()
    result = build_k710_lists(folders, root, layout="{youtube_id}-{start}.mkv",
                              subdirs={"k400": "clips", "k600": "clips", "k700": "clips"})
    assert _by_id(result.train) == {"yt_A1": ("clips", 0), "yt_A2": ("clips", 12), "yt_B2": ("clips", 661)}
    assert _by_id(result.val) == {"yt_V1": ("clips", 0)}


def test_auto_layout_with_no_video_found_is_an_error(scenario, tmp_path):
    folders, _ = scenario
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecipeError, match=r"k400: none of .* sampled videos found .*--layout"):
        build_k710_lists(folders, empty)


@pytest.mark.parametrize("layout, message", [
    ("{youtube}.mp4", "not a preset"),
    ("{split}/clip.mp4", "does not use {youtube_id}"),
])
def test_bad_layout_template(scenario, layout, message):
    folders, root = scenario
    with pytest.raises(RecipeError, match=re.escape(message)):
        build_k710_lists(folders, root, layout=layout)


def test_missing_dataset_and_bad_precedence(scenario):
    folders, root = scenario
    with pytest.raises(RecipeError, match="missing for k700"):
        build_k710_lists({"k400": folders["k400"], "k600": folders["k600"]}, root)
    with pytest.raises(RecipeError, match="must name each of"):
        build_k710_lists(folders, root, precedence=("k700", "k400"))


def test_bad_csv_rows_name_file_and_line(scenario):
    folders, root = scenario
    csv_path = folders["k600"] / "train.csv"
    csv_path.write_text(csv_path.read_text() + "archery,yt_Z1,10,20,training\n")
    with pytest.raises(RecipeError, match=r"train\.csv:6: split 'training' is not one of"):
        build_k710_lists(folders, root)


def test_missing_test_set_is_warned(tmp_path, scenario_module):
    rows = [r for r in scenario_module.ROWS if not (r.dataset == "k700" and r.split == "test")]
    folders, root = scenario_module.write_scenario(tmp_path, rows)
    result = build_k710_lists(folders, root)
    assert any("k700: no test rows" in w for w in result.warnings)
    # Without the K700 test CSV, nothing marks yt_A5 as an evaluation video: it stays in training.
    assert _by_id(result.train)["yt_A5"] == ("k400", 0)


def test_csvs_saved_with_a_byte_order_mark_read_the_same(scenario, scenario_module):
    folders, root = scenario
    for folder in folders.values():
        for csv_path in folder.glob("*.csv"):  # a spreadsheet's "CSV UTF-8" puts a mark before the header
            csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    result = build_k710_lists(folders, root)
    assert result.counts == scenario_module.EXPECTED_COUNTS
    assert _by_id(result.val) == scenario_module.EXPECTED_VAL


def _drop_last_row(csv_path):
    lines = csv_path.read_text().splitlines(keepends=True)
    csv_path.write_text("".join(lines[:-1]))


@pytest.mark.parametrize("keep_incomplete_csvs", [True, False])
def test_k600_txt_annotations_are_read_and_win_over_the_incomplete_csvs(scenario, scenario_module,
                                                                       keep_incomplete_csvs):
    # CVDF's K600 download: complete train.txt/val.txt (CSV text) and, beside them, train.csv/val.csv
    # that miss rows (cvdfoundation/kinetics-dataset#33); its own script fetches only the .txt files.
    folders, root = scenario
    k600 = folders["k600"]
    for split in ("train", "validate"):
        (k600 / f"{split}.txt").write_text((k600 / f"{split}.csv").read_text())
        if keep_incomplete_csvs:
            _drop_last_row(k600 / f"{split}.csv")  # yt_B3 (train) and yt_V2 (val) only in the .txt
        else:
            (k600 / f"{split}.csv").unlink()
    (k600 / "readme.txt").write_text("Kinetics-600\nsee the website\n")

    result = build_k710_lists(folders, root)
    assert result.counts == scenario_module.EXPECTED_COUNTS
    assert _by_id(result.val) == scenario_module.EXPECTED_VAL
    notes = [w for w in result.warnings if w.startswith("k600:")]
    assert f"k600: {k600 / 'readme.txt'} not read: not an annotation table" in notes[0]
    if keep_incomplete_csvs:
        assert notes[1:] == [f"k600: read {k600 / 'train.txt'}, not train.csv beside it (a .txt next to a .csv "
                             "of the same name is taken as the complete one: CVDF's K600 train/val .csv files "
                             "are incomplete)", notes[2]]
        assert notes[2].startswith(f"k600: read {k600 / 'validate.txt'}, not validate.csv beside it")
    else:
        assert len(notes) == 1


def test_a_folder_without_annotation_files_names_what_it_looks_for(scenario, tmp_path):
    folders, root = scenario
    empty = tmp_path / "k600_empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here\n")
    with pytest.raises(RecipeError, match=r"k600: folder .*k600_empty holds no annotation file \(\*\.csv, or \*\.txt"):
        build_k710_lists({**folders, "k600": empty}, root)


def test_classes_left_without_a_video_are_reported(scenario, scenario_module):
    folders, root = scenario
    result = build_k710_lists(folders, root)
    val_classes = {label for _, label in scenario_module.EXPECTED_VAL.values()}
    assert val_classes == {0, 1}
    assert result.empty_classes["val"] == [row for row in range(K710_CLASSES) if row not in val_classes]
    assert len(result.empty_classes["train"]) == K710_CLASSES - 6  # rows 0, 5, 12, 209, 357, 661
    assert empty_classes([(f"v{row}.mp4", row) for row in range(K710_CLASSES)]) == []

    printed = format_summary(result, {name: f"out/{name}" for name in ("train", "val", "missing", "summary")})
    names = packaged_label_list("k710")
    assert (f"warning: val leaves 708 of 710 K710 classes without a video (2 {names[2]!r}, 3 {names[3]!r}, "
            f"4 {names[4]!r}, ...; all in the summary JSON, empty_classes)") in printed.splitlines()
    assert "train: 9 videos (published K710 train: 658,340; 0.0% of it) -> out/train" in printed.splitlines()
    assert "val: 4 videos (published K710 val: 66,803; 0.0% of it) -> out/val" in printed.splitlines()
