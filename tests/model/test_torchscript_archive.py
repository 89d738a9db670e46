"""TorchScript CLIP archives are read as zip files: the same tensors as torch.jit.load, no code run."""

import os
import pickle
import warnings
import zipfile

import pytest
import torch

from vidprism_ds.model.clip_weights import ClipWeightsError, read_clip_state_dict
from vidprism_ds.model.torchscript_archive import read_torchscript_state_dict


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.register_buffer("scale", torch.full((3,), 2.0, dtype=torch.float16))

    def forward(self, x):
        return self.lin(x) * self.scale.float()


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.Sequential(_Block(), _Block())  # traced as two mangled classes
        self.proj = torch.nn.Parameter(torch.randn(3, 2))
        self.not_state = torch.ones(1)  # a plain attribute: not in the state dict

    def forward(self, x):
        return self.blocks(x) @ self.proj + self.not_state


def _archive(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(_Model().eval(), torch.zeros(1, 3)), str(path))
        return torch.jit.load(str(path)).state_dict()


def test_the_state_dict_equals_torch_jit_loads(tmp_path, monkeypatch):
    reference = _archive(tmp_path / "m.pt")
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load must not be called"))
    ours = read_torchscript_state_dict(tmp_path / "m.pt")
    assert ours.keys() == reference.keys()
    for key, tensor in reference.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key


def test_an_archive_whose_pickle_calls_a_function_is_refused_and_runs_nothing(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(tmp_path / "pwned"),))

    good = tmp_path / "m.pt"
    _archive(good)
    crafted = tmp_path / "ViT-B-16.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(crafted, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps(Payload(), protocol=2)
            target.writestr(item, data)
    with pytest.raises(ClipWeightsError, match=r"ViT-B-16\.pt: .*refused global os\.makedirs"):
        read_clip_state_dict(crafted)
    assert not (tmp_path / "pwned").exists()
