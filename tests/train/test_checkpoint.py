import json

from vidprism_ds.train.checkpoint import LATEST_FILE, META_FILE, complete_tags, newest_complete, tag_for_step


def _tag(root, step, complete=True):
    d = root / tag_for_step(step)
    d.mkdir(parents=True)
    if complete:
        (d / META_FILE).write_text(json.dumps({"tag": d.name, "step": step, "epoch": 0, "batches_in_epoch": step,
                                               "world_size": 2, "ep_size": 2, "config": {}}))


def test_incomplete_tags_are_never_chosen(tmp_path):
    _tag(tmp_path, 4)
    _tag(tmp_path, 8, complete=False)  # killed while saving
    (tmp_path / LATEST_FILE).write_text(tag_for_step(8))
    assert complete_tags(tmp_path) == [tag_for_step(4)]
    assert newest_complete(tmp_path).step == 4


def test_a_complete_tag_newer_than_latest_is_used(tmp_path):
    _tag(tmp_path, 4)
    _tag(tmp_path, 6)  # killed between the metadata and the pointer
    (tmp_path / LATEST_FILE).write_text(tag_for_step(4))
    assert newest_complete(tmp_path).step == 6


def test_no_checkpoint(tmp_path):
    assert newest_complete(tmp_path / "missing") is None
