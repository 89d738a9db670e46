import pytest

from vidprism_ds.config import load_config
from vidprism_ds.data import presets
from vidprism_ds.train.run_config import DEMO_CONFIG


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


@pytest.mark.parametrize("text", ["0,moving right\n1,moving left\n", "id,name\n1,moving left\n0,moving right\n\n",
                                  'ID, Name\n0,"moving right"\n1, moving left\n'])
def test_an_id_name_csv_label_file_is_read_by_id(tmp_path, text):
    (tmp_path / "labels.csv").write_text(text)
    assert presets.load_class_names("custom", tmp_path / "labels.csv") == ["moving right", "moving left"]


@pytest.mark.parametrize("text, message", [
    ("1,a\n2,b\n", r"ids of an id,name list must be 0\.\.1, each once; found \[2\]"),
    ("0,a\n0,b\n", r"line 2: id 0 is listed twice"),
    ("0,a\nb\n", r"line 1 is an id,name row, line 2 is not"),
    ("index,label\n0,a\n1,b\n", r"line 1 \('index,label'\) is not the header 'id,name'"),
    ("id,name\n0,a,extra\n", r"line 2 is not an id,name row"),
    ("id,name\n0,\n", r"line 2: id 0 has no name"),
])
def test_a_broken_id_name_csv_is_refused_naming_file_and_line(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match=rf"labels\.csv: .*{message}"):
        presets.load_class_names("custom", tmp_path / "labels.csv")


def test_names_with_commas_stay_names(tmp_path):
    (tmp_path / "labels.txt").write_text("\ufeffpushing something, then letting go\n0 people, 1 dog\n")
    assert presets.load_class_names("custom", tmp_path / "labels.txt") == [
        "pushing something, then letting go", "0 people, 1 dog"]


@pytest.mark.parametrize("dataset, hflip, flips", [
    ("k400", None, True), ("k400", True, True), ("k400", False, False),
    ("ucf101", None, True), ("hmdb51", None, True),
    ("ssv2", None, False), ("ssv2", False, False), ("ssv2", True, False),  # True is refused by validate
    ("synthetic", None, False),
    ("custom", True, True), ("custom", False, False), ("custom", None, False),  # None is refused by validate
])
def test_effective_hflip_lets_the_preset_decide_null(dataset, hflip, flips):
    assert presets.effective_hflip(dataset, hflip) is flips


def test_the_default_config_and_the_demo_never_flip():
    default, demo = load_config().data, load_config(DEMO_CONFIG).data
    assert default.hflip is None and not presets.effective_hflip(default.dataset, default.hflip)
    assert not presets.effective_hflip(demo.dataset, demo.hflip)


def test_ucf101_class_index_space_separated_and_1_based_is_read_as_an_id_file(tmp_path):
    from vidprism_ds.data.presets import load_class_names, parse_class_names

    class_ind = tmp_path / "classInd.txt"
    class_ind.write_bytes(b"1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")  # as UCF101 ships it (CRLF)
    assert load_class_names("custom", class_ind) == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert parse_class_names("2 b\n0 a\n1 c\n") == ["a", "c", "b"]  # 0-based, any order
    with pytest.raises(ValueError, match=r"the ids of an id name list must be 0\.\.1 or 1\.\.2, each once"):
        parse_class_names("1 a\n3 b\n", "classInd.txt")
