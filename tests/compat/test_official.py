"""Official checkpoint import.

The layout is built here from docs/model.md#the-official-layout (the official state dict's keys). If a checkout of
the official repository is available (``VIDPRISM_OFFICIAL_REPO=/path/to/VidPrism``), the import is
also compared against the official module itself.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.model.reference import reference_head_forward
from vidprism_ds.compat.official import _PREFIX_MAP, load_official_head
from vidprism_ds.config.schema import HeadConfig
from vidprism_ds.model.head import VidPrismHead

DIM, CLASSES = 32, 9


def _to_official_layout(head: VidPrismHead) -> dict[str, torch.Tensor]:
    """Our state dict in the official names, plus the gate MLPs the official code builds but never uses."""
    state = {}
    for key, value in head.state_dict().items():
        for old, new in _PREFIX_MAP:
            if key.startswith(new):
                state[old + key[len(new):]] = value.clone()
                break
    n = len(head.rates)
    g = torch.Generator().manual_seed(5)
    for flat in range(n * n):
        if f"dynamic_interaction.score_mlps.{flat}.0.weight" not in state:
            state[f"dynamic_interaction.score_mlps.{flat}.0.weight"] = torch.randn(DIM // 4, 2 * DIM, generator=g)
            state[f"dynamic_interaction.score_mlps.{flat}.0.bias"] = torch.randn(DIM // 4, generator=g)
            state[f"dynamic_interaction.score_mlps.{flat}.2.weight"] = torch.randn(1, DIM // 4, generator=g)
            state[f"dynamic_interaction.score_mlps.{flat}.2.bias"] = torch.randn(1, generator=g)
    return state


@pytest.fixture
def official_state():
    torch.manual_seed(0)
    source = VidPrismHead(DIM, CLASSES, HeadConfig(mode="official"))
    return source, _to_official_layout(source)


def test_infers_shape_and_returns_eval_official_head(official_state):
    _, state = official_state
    head = load_official_head(state)
    assert head.official and not head.training
    assert head.classifier.out_features == CLASSES and head.classifier.in_features == DIM
    assert head.rates == [2, 4, 8, 16] and head.cfg.expert_ffn_mult == 2


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_logits_match_reference_for_any_batch(official_state, batch):
    _, state = official_state
    head = load_official_head(state)
    x_btd = torch.randn(batch, 32, DIM)
    out = head(x_btd)
    logits, weights, _ = reference_head_forward(head, x_btd)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.expert_weights, weights, atol=1e-6, rtol=1e-5)


def test_checkpoint_file_with_ddp_prefix_and_cli(official_state, tmp_path):
    source, state = official_state
    ckpt = {"epoch": 3, "fusion_model_state_dict": {f"module.{k}": v for k, v in state.items()},
            "model_state_dict": {"module.visual.proj": torch.randn(DIM, DIM), "module.logit_scale": torch.ones(())},
            "optimizer_state_dict": {}}
    path = tmp_path / "official.pt"
    torch.save(ckpt, path)
    head = load_official_head(path)
    x_btd = torch.randn(2, 16, DIM)
    torch.testing.assert_close(head(x_btd).logits, source.eval()(x_btd).logits)

    out = tmp_path / "converted.pt"
    proc = subprocess.run([sys.executable, "-m", "vidprism_ds.compat.official", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    payload = torch.load(out, weights_only=True)
    assert payload["epoch"] == 3 and payload["num_classes"] == CLASSES
    assert set(payload["visual_state_dict"]) == {"proj"}
    rebuilt = VidPrismHead(payload["dim"], payload["num_classes"], HeadConfig(**payload["head_config"])).eval()
    rebuilt.load_state_dict(payload["head_state_dict"])
    torch.testing.assert_close(rebuilt(x_btd).logits, head(x_btd).logits)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"fusion_model_state_dict": {"x": _Exploit()}}, path)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_official_head(path)


def test_cli_reports_bad_input(tmp_path):
    path = tmp_path / "not_a_head.pt"
    torch.save({"fusion_model_state_dict": {"foo.weight": torch.zeros(1)}}, path)
    proc = subprocess.run([sys.executable, "-m", "vidprism_ds.compat.official", str(path), "--out", str(tmp_path / "o.pt")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not an official VidPrism head" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "vidprism_ds.compat.official", str(tmp_path / "missing.pt"),
                           "--out", str(tmp_path / "o.pt")], capture_output=True, text=True)
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_rates_override_must_match_expert_count(official_state):
    _, state = official_state
    with pytest.raises(ValueError, match="sampling_rates"):
        load_official_head(state, sampling_rates=[2, 4, 8])
    with pytest.raises(ValueError, match="unknown override"):
        load_official_head(state, no_such_field=1)


def _official_repo() -> Path | None:
    root = os.environ.get("VIDPRISM_OFFICIAL_REPO")
    return Path(root) if root and (Path(root) / "modules" / "videomoe.py").is_file() else None


@pytest.mark.skipif(_official_repo() is None,
                    reason="set VIDPRISM_OFFICIAL_REPO to a checkout of the official VidPrism code to compare against it")
@pytest.mark.parametrize("batch", [1, 4])
def test_matches_official_module(batch, monkeypatch):
    monkeypatch.syspath_prepend(str(_official_repo()))
    from modules.videomoe import VidPrism  # the official module

    torch.manual_seed(0)
    official = VidPrism(num_experts=4, sampling_rates=[2, 4, 8, 16], num_classes=CLASSES, d_model=64).eval()
    head = load_official_head(official.state_dict())
    x_btd = torch.randn(batch, 32, 64)
    logits, weights, *_ = official(x_btd.clone(), batch, 32)
    out = head(x_btd)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.expert_weights, weights, atol=1e-5, rtol=0)
