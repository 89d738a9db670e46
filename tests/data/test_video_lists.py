import json

import pytest

from vidprism_ds.data.video_lists import VideoListError, read_video_list, repeated_paths, ssv2_class_name


def test_two_column_list_keeps_spaces_in_paths(tmp_path):
    (tmp_path / "list.txt").write_text("a dir/clip one.mp4 3\nplain.avi 0\n\n# comment\nx/y z 12.mp4\t7\n")
    entries, _ = read_video_list(tmp_path / "list.txt", tmp_path)
    assert [(e.video_id, e.label) for e in entries] == [("a dir/clip one.mp4", 3), ("plain.avi", 0), ("x/y z 12.mp4", 7)]
    assert entries[0].path == str(tmp_path / "a dir" / "clip one.mp4")
    assert [e.line for e in entries] == [1, 2, 5]


def test_three_column_list_is_detected_and_forced(tmp_path):
    (tmp_path / "list.txt").write_text("cls a/v 1.mp4 300 4\nb.mp4 120 2\n")
    entries, _ = read_video_list(tmp_path / "list.txt", tmp_path)
    assert [(e.video_id, e.label) for e in entries] == [("cls a/v 1.mp4", 4), ("b.mp4", 2)]
    # without a video extension "dir 300 4" is ambiguous: auto reads three columns, path_label forces two
    (tmp_path / "frames.txt").write_text("rawframes/dir 300 4\n")
    auto = read_video_list(tmp_path / "frames.txt", tmp_path)[0][0]
    assert (auto.video_id, auto.label) == ("rawframes/dir", 4)
    forced = read_video_list(tmp_path / "frames.txt", tmp_path, "path_label")[0][0]
    assert (forced.video_id, forced.label) == ("rawframes/dir 300", 4)
    (tmp_path / "two.txt").write_text("a.mp4 1\n")
    with pytest.raises(VideoListError, match="num_frames"):
        read_video_list(tmp_path / "two.txt", tmp_path, "path_frames_label")


def test_label_out_of_range_is_a_row_problem_not_an_error(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4 1\nb.mp4 9\n")
    entries, _ = read_video_list(tmp_path / "list.txt", tmp_path, class_names=["x", "y"])
    assert entries[0].problem is None
    assert "out of range" in entries[1].problem


@pytest.mark.parametrize("text", ["just_a_path.mp4\n", "a.mp4 label\n", "a.mp4 1 2 x\n"])
def test_malformed_line_names_file_and_line(tmp_path, text):
    (tmp_path / "list.txt").write_text("ok.mp4 0\n" + text)
    with pytest.raises(VideoListError, match=r"list.txt:2"):
        read_video_list(tmp_path / "list.txt", tmp_path)


def test_missing_list_file(tmp_path):
    with pytest.raises(VideoListError, match="not found"):
        read_video_list(tmp_path / "nope.txt", tmp_path)


def test_kinetics_csv_resolves_class_folders_and_flat_files(tmp_path):
    (tmp_path / "train" / "air drumming").mkdir(parents=True)
    (tmp_path / "train" / "air drumming" / "abc_000010_000020.mp4").write_bytes(b"x")
    (tmp_path / "train" / "abseiling").mkdir()
    (tmp_path / "train" / "abseiling" / "dup_000001_000011.mp4").write_bytes(b"x")
    (tmp_path / "dup_000001_000011.mp4").write_bytes(b"x")  # same stem elsewhere: the class folder wins
    (tmp_path / "flat_000005_000015.webm").write_bytes(b"x")
    (tmp_path / "yidonly.mkv").write_bytes(b"x")  # named by YouTube id alone
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        '"air drumming",abc,10,20,train,0\n'
        "abseiling,dup,1,11,train,0\n"
        "abseiling,flat,5.0,15.0,train,0\n"
        "abseiling,yidonly,3,13,train,0\n"
        "abseiling,gone,3,13,train,0\n"
        "not a class,abc,10,20,train,0\n")
    classes = ["abseiling", "air drumming"]
    entries, names = read_video_list(tmp_path / "k.csv", tmp_path, class_names=classes)
    assert names == classes
    rel = [e.path.replace(str(tmp_path) + "/", "") for e in entries]
    assert rel[:4] == ["train/air drumming/abc_000010_000020.mp4", "train/abseiling/dup_000001_000011.mp4",
                       "flat_000005_000015.webm", "yidonly.mkv"]
    assert [e.label for e in entries[:4]] == [1, 0, 0, 0]
    assert [e.problem is None for e in entries] == [True, True, True, True, False, False]
    assert "no video file" in entries[4].problem and "not in the class list" in entries[5].problem
    assert entries[0].video_id == "abc_000010_000020"


def test_kinetics_csv_without_label_column_is_an_error(tmp_path):
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nabc,1,11,test\n")
    with pytest.raises(VideoListError, match="lacks column"):
        read_video_list(tmp_path / "test.csv", tmp_path)


def test_ssv2_json(tmp_path):
    items = [
        {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
         "template": "Holding [something] next to [something]", "placeholders": ["potato", "bottle"]},
        {"id": "42326", "label": "x", "template": "Bending [something] so that it deforms", "placeholders": ["x"]},
        {"id": "1", "label": "y", "template": "Not a [real] class", "placeholders": []},
        {"id": "2"},  # the test split has no labels
    ]
    (tmp_path / "train.json").write_text(json.dumps(items))
    classes = ["Bending something so that it deforms", "Holding something next to something"]
    entries, _ = read_video_list(tmp_path / "train.json", tmp_path, class_names=classes)
    assert [e.label for e in entries] == [1, 0, -1, -1]
    assert entries[0].path == str(tmp_path / "78687.webm")
    assert [e.problem is None for e in entries] == [True, True, False, False]
    assert ssv2_class_name("Putting [something] onto [something]") == "Putting something onto something"


def test_ssv2_json_must_be_a_list_of_objects(tmp_path):
    (tmp_path / "bad.json").write_text('{"id": 1}')
    with pytest.raises(VideoListError, match="JSON list"):
        read_video_list(tmp_path / "bad.json", tmp_path)


BOM = "\ufeff"  # what spreadsheets and Windows editors put before the first byte of a UTF-8 file


@pytest.mark.parametrize("name, text, expected", [
    ("list.txt", "a.mp4 1\nb.mp4 0\n", [("a.mp4", 1, None), ("b.mp4", 0, None)]),
    ("k.csv", "label,youtube_id,time_start,time_end,split\nair drumming,abc,10,20,train\n",
     [("abc_000010_000020", 1, "no video file named abc_000010_000020.* or abc.*")]),
    ("s.json", json.dumps([{"id": "7", "template": "Bending [something] so that it deforms"}]), [("7", 0, None)]),
])
def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path, name, text, expected):
    (tmp_path / name).write_text(BOM + text, encoding="utf-8")
    classes = ["Bending something so that it deforms", "air drumming"] if name != "list.txt" else None
    entries, _ = read_video_list(tmp_path / name, tmp_path, class_names=classes)
    found = [(e.video_id, e.label, e.problem and e.problem.split(" under ")[0]) for e in entries]
    assert found == expected


def test_repeated_paths_are_found_with_their_lines(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 1\n./a.mp4 2\nc.mp4 0\na.mp4 0\nc.mp4 5\nb.mp4 9\n")
    entries, _ = read_video_list(tmp_path / "list.txt", tmp_path, class_names=["x", "y", "z"])
    # "./a.mp4" is the same file as "a.mp4"; the rows with a label out of range are skipped anyway
    assert repeated_paths(entries) == {str(tmp_path / "a.mp4"): [1, 3, 5]}
