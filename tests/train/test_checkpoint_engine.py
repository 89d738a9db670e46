"""Checkpoint files load with weights_only=True: a crafted pickle in a tag is refused, never run."""

import os

import pytest
import torch

from vidprism_ds.train.checkpoint_engine import SafeCheckpointEngine, UnsafeCheckpointError, safe_torch_load
from vidprism_ds.utils.files import OutOfSpaceError


class _Payload:
    """Unpickling this object creates a file: the stand-in for an attacker's code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_crafted_checkpoint_file_is_refused_naming_it_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(1)}, "extra": _Payload(marker)}, crafted)
    with pytest.raises(UnsafeCheckpointError, match=r"mp_rank_00_model_states\.pt: refused to load"):
        SafeCheckpointEngine().load(str(crafted), map_location="cpu")
    assert not marker.exists()
    # what DeepSpeed's own engine does with the same file (the reason for ours)
    torch.load(crafted, weights_only=False)
    assert marker.exists()


def test_deepspeeds_checkpoint_classes_are_allowed(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    path = tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    torch.save({"zero_stage": ZeroStageEnum.gradients, "loss_scaler": LossScaler(1.0), "t": torch.ones(2)}, path)
    loaded = safe_torch_load(path)
    assert loaded["zero_stage"] == ZeroStageEnum.gradients and torch.equal(loaded["t"], torch.ones(2))


def test_saving_onto_a_full_disk_names_it():
    with pytest.raises(OutOfSpaceError, match="/dev/full"):
        SafeCheckpointEngine().save({"w": torch.zeros(100_000)}, "/dev/full")
