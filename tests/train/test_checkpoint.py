import json
import pytest

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


def _verified_tag(root, step, payload=b"weights" * 100):
    """A complete tag whose metadata records its files' sizes and checksums, as the manager writes it."""
    from vidprism_ds.train.checkpoint import tag_file_records

    d = root / tag_for_step(step)
    (d / "experts").mkdir(parents=True)
    (d / "mp_rank_00_model_states.pt").write_bytes(payload)
    (d / "experts" / "expert_000.pt").write_bytes(payload[::-1])
    meta = {"tag": d.name, "step": step, "epoch": 0, "batches_in_epoch": step, "world_size": 1, "ep_size": 1,
            "config": {}, "files": tag_file_records(d)}
    (d / META_FILE).write_text(json.dumps(meta))
    return d


def test_resume_skips_a_truncated_or_corrupt_tag_and_says_why(tmp_path):
    from vidprism_ds.train.checkpoint import choose_resume_tag

    _verified_tag(tmp_path, 2)
    truncated = _verified_tag(tmp_path, 4)
    corrupt = _verified_tag(tmp_path, 6)
    with open(truncated / "mp_rank_00_model_states.pt", "r+b") as handle:
        handle.truncate(100)  # a node killed while the filesystem flushed
    (corrupt / "experts" / "expert_000.pt").write_bytes(b"X" * 700)  # same size, other bytes
    lines = []
    meta = choose_resume_tag(tmp_path, lines.append)
    assert meta.step == 2
    assert any("step_00000006" in line and "expert_000.pt does not match its checksum" in line for line in lines)
    assert any("step_00000004" in line and "mp_rank_00_model_states.pt has 100 bytes, 700 were written" in line
               for line in lines)


def test_starting_from_scratch_in_a_folder_with_checkpoints_says_why(tmp_path):
    from vidprism_ds.train.checkpoint import choose_resume_tag

    bad = _verified_tag(tmp_path, 2)
    (bad / "mp_rank_00_model_states.pt").unlink()
    _tag(tmp_path, 4, complete=False)
    lines = []
    assert choose_resume_tag(tmp_path, lines.append) is None
    assert len(lines) == 1 and "starting from step 0" in lines[0]
    assert "step_00000004: incomplete" in lines[0] and "mp_rank_00_model_states.pt is missing" in lines[0]


def test_tags_written_before_checksums_existed_are_trusted(tmp_path):
    from vidprism_ds.train.checkpoint import choose_resume_tag

    _tag(tmp_path, 4)  # metadata without "files"
    assert choose_resume_tag(tmp_path, print).step == 4


@pytest.mark.slow
def test_resaving_the_same_step_with_one_kept_tag_never_deletes_it(tmp_path):
    from tests.parallel.harness import run_workers

    result = run_workers("tests.train.workers:resave_same_step_killed", 1, root=str(tmp_path))[0]
    assert result["tags_after_kill"] == ["step_00000003"]
    assert result["verified_step"] == 3 and result["batches_in_epoch"] == 5


def test_tags_from_before_tp_size_was_recorded_are_tp1_and_the_topology_compares_all_three_sizes(tmp_path):
    from types import SimpleNamespace

    from vidprism_ds.train.checkpoint import read_meta, same_topology

    _tag(tmp_path, 4)  # world 2, ep 2, no tp_size in its metadata
    meta = read_meta(tmp_path / tag_for_step(4))
    assert meta.tp_size == 1
    assert same_topology(meta, SimpleNamespace(world_size=2, ep_size=2, tp_size=1))
    for other in ((1, 1, 1), (4, 2, 1), (2, 1, 1), (2, 2, 2)):
        world_size, ep_size, tp_size = other
        assert not same_topology(meta, SimpleNamespace(world_size=world_size, ep_size=ep_size, tp_size=tp_size))


def test_a_damaged_optimizer_file_makes_the_tag_unusable(tmp_path):
    """The consolidated optimizer state is in the tag's records like every other file."""
    from vidprism_ds.train.checkpoint import choose_resume_tag, tag_file_records

    older, newer = _verified_tag(tmp_path, 3), _verified_tag(tmp_path, 5)
    (newer / "optimizer").mkdir()
    (newer / "optimizer" / "shared_00000.pt").write_bytes(b"moments" * 100)
    meta = json.loads((newer / META_FILE).read_text())
    meta["files"] = tag_file_records(newer)
    (newer / META_FILE).write_text(json.dumps(meta))
    (newer / "optimizer" / "shared_00000.pt").write_bytes(b"moments" * 50)  # a half-written file
    lines = []
    assert choose_resume_tag(tmp_path, lines.append).step == 3 and older.is_dir()
    assert "optimizer/shared_00000.pt has 350 bytes, 700 were written" in lines[0]
