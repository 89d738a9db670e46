import pytest

from vidprism_ds.data import presets


@pytest.mark.parametrize("name", [n for n in presets.PRESETS])
def test_every_preset_loads_its_class_list(name):
    names = presets.load_class_names(name)
    assert len(names) == presets.get_preset(name).num_classes == len(set(names))


def test_direction_sensitive_presets():
    assert {n for n, p in presets.PRESETS.items() if p.direction_sensitive} == {"ssv2", "synthetic"}
    assert not presets.is_direction_sensitive("custom")


def test_k710_index_maps_slice_the_710_way_head():
    k710 = presets.load_class_names("k710")
    for subset in presets.K710_SUBSETS:
        index = presets.load_k710_index(subset)
        assert len(index) == presets.get_preset(subset).num_classes == len(set(index))
        assert all(0 <= i < len(k710) for i in index)
    assert presets.load_k710_index("k400") == list(range(400))  # the K400 classes come first
    with pytest.raises(ValueError, match="no K710 index map"):
        presets.load_k710_index("ucf101")


def test_custom_label_file(tmp_path):
    (tmp_path / "labels.txt").write_text("b\na\n")
    assert presets.load_class_names("custom", tmp_path / "labels.txt") == ["b", "a"]
    with pytest.raises(ValueError, match="needs a label file"):
        presets.load_class_names("custom")
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="duplicate"):
        presets.load_class_names("custom", tmp_path / "dup.txt")
    with pytest.raises(ValueError, match="unknown dataset preset"):
        presets.get_preset("k999")


def test_label_list_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "gap.txt").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match=r"gap\.txt: line 2 is empty"):
        presets.load_class_names("custom", tmp_path / "gap.txt")
    (tmp_path / "twice.txt").write_text("a\nb\na\n\n")
    with pytest.raises(ValueError, match=r"twice\.txt: duplicate class names .*\['a'\]"):
        presets.load_class_names("custom", tmp_path / "twice.txt")


def test_packaged_lists_are_the_presets_with_a_label_file():
    assert presets.PACKAGED_LISTS == ("k400", "k600", "k700", "k710", "ucf101", "hmdb51", "ssv2")
