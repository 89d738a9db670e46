import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError
from vidprism_ds.train import demo
from vidprism_ds.train.demo import _row
from vidprism_ds.train.loop_state import RunResult


@pytest.mark.parametrize("num_classes, top5_shown", [(4, False), (10, True)])
def test_the_demo_report_prints_top5_only_when_it_can_miss(num_classes, top5_shown):
    row = _row("VidPrism (default)", RunResult(eval_metrics={"top1": 0.625, "top5": 1.0}), num_classes)
    assert row.startswith("  VidPrism (default)") and "top-1 0.625" in row
    assert ("top-5 1.000" in row) == top5_shown


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_the_demo_refuses_gpu_decoding_without_a_gpu_before_rendering_its_data(monkeypatch):
    rendered = []
    monkeypatch.setattr(demo, "init_distributed", lambda: (0, 1, 0))
    monkeypatch.setattr(demo, "prepare_demo_data", lambda cfg, rank: rendered.append(cfg) or cfg)
    cfg = load_config(None, ["data.decode_device=cuda"])
    with pytest.raises(ConfigError, match="data.decode_device"):
        demo.run_demo(cfg, {})
    assert rendered == []
