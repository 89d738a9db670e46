"""Atomic writes: a failed write never leaves a torn file under the final name; a full disk is named."""

import errno

import pytest
import torch

from vidprism_ds.utils.files import OutOfSpaceError, atomic_file, atomic_write_text, translate_out_of_space


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "model_fp32.pt"
    atomic_write_text(path, "old")
    with pytest.raises(OutOfSpaceError, match=r"no space left on the device holding .*model_fp32\.pt"):
        with atomic_file(path) as handle:
            handle.write(b"half of the new file")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_fp32.pt"]


def test_a_new_file_appears_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "export.pt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(path) as handle:
            torch.save({"w": torch.ones(3)}, handle)
            raise KeyboardInterrupt  # a kill between the write and the rename
    assert not path.exists() and list(path.parent.iterdir()) == []
    with atomic_file(path) as handle:
        torch.save({"w": torch.ones(3)}, handle)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))


def test_torch_saves_full_disk_error_is_named():
    # /dev/full refuses every write with ENOSPC; torch's zip writer reports it as "unexpected pos"
    with pytest.raises(OutOfSpaceError, match="no space left on the device holding /dev/full"):
        with translate_out_of_space("/dev/full"):
            torch.save({"w": torch.zeros(100_000)}, "/dev/full")


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with translate_out_of_space(tmp_path):
            raise PermissionError(errno.EACCES, "denied")
