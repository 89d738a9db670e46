"""The recipes' list reader and the data loader's reader see the same rows and labels."""

import pytest

from vidprism_ds.data.video_lists import read_video_list
from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.listfile import read_list, write_list

LIST_TEXT = """# a comment
a/clip one.mp4 3

  b/two.avi   0
c/dir 12
"""


def test_rows_and_labels_agree_with_the_data_loader(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(LIST_TEXT)
    recipe_rows = read_list(path)
    loader_rows, _ = read_video_list(path, root=tmp_path, list_format="path_label")
    assert [(r.body, r.label, r.line_no) for r in recipe_rows] == [
        ("a/clip one.mp4", 3, 2), ("b/two.avi", 0, 4), ("c/dir", 12, 5)]
    assert [(str(tmp_path / r.body), r.label, r.line_no) for r in recipe_rows] == [
        (e.path, e.label, e.line) for e in loader_rows]


def test_round_trip_and_bad_rows(tmp_path):
    path = tmp_path / "out" / "list.txt"
    assert write_list(path, [("x y/z.mp4", 4), ("w.mp4", 0)]) == 2
    assert [(r.body, r.label) for r in read_list(path)] == [("x y/z.mp4", 4), ("w.mp4", 0)]
    for bad in ("no_label.mp4\n", "neg.mp4 -1\n"):
        path.write_text(bad)
        with pytest.raises(RecipeError, match=r"list\.txt:1: expected 'relative/path label'"):
            read_list(path)


def test_a_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("\ufeffa/clip.mp4 3\nb.mp4 0\n", encoding="utf-8")  # as a spreadsheet saves it
    assert [(r.body, r.label) for r in read_list(path)] == [("a/clip.mp4", 3), ("b.mp4", 0)]
