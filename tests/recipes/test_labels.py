"""The recipes read label lists and K710 maps through vidprism_ds.data.presets, with RecipeError."""

import pytest

from vidprism_ds.data import presets
from vidprism_ds.recipes.errors import RecipeError
from vidprism_ds.recipes.labels import k710_index_map, load_label_list, packaged_label_list


def test_same_lists_and_maps_as_the_data_presets():
    for name in presets.PACKAGED_LISTS:
        assert list(packaged_label_list(name)) == presets.load_class_names(name)
    for name in presets.K710_SUBSETS:
        assert list(k710_index_map(name)) == presets.load_k710_index(name)


def test_label_file_by_path(tmp_path):
    (tmp_path / "mine.txt").write_text("b\na\n")
    assert load_label_list(tmp_path / "mine.txt") == ("b", "a")
    assert load_label_list("hmdb51") == packaged_label_list("hmdb51")


@pytest.mark.parametrize("call, message", [
    (lambda tmp: load_label_list(tmp / "absent.txt"), "no such label file"),
    (lambda tmp: load_label_list(tmp / "dup.txt"), r"dup\.txt: duplicate class names"),
    (lambda tmp: load_label_list(tmp / "latin1.txt"), "not UTF-8"),
    (lambda tmp: packaged_label_list("k999"), "no packaged label list 'k999'"),
    (lambda tmp: k710_index_map("ucf101"), "no K710 index map for 'ucf101'"),
])
def test_errors_are_recipe_errors(tmp_path, call, message):
    (tmp_path / "dup.txt").write_text("a\na\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecipeError, match=message):
        call(tmp_path)
