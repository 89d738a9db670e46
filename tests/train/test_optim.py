import math

import pytest

from vidprism_ds.config import load_config
from vidprism_ds.model.video_model import build_video_model
from vidprism_ds.train.optim import NO_DECAY_LEAVES, build_optimizer, lr_factor, param_groups


def _model(*overrides):
    cfg = load_config(None, ["model.backbone.image_size=32", "data.image_size=32", *overrides])
    return cfg, build_video_model(cfg.model, num_classes=4, num_frames=8).model


def test_groups_split_backbone_head_and_decay():
    cfg, model = _model("optim.lr=0.01", "optim.clip_ratio=0.1", "optim.weight_decay=0.2")
    groups = param_groups(model, cfg.optim)
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone_decay"]["lr"] == pytest.approx(0.001)
    assert by_name["head_decay"]["lr"] == pytest.approx(0.01)
    assert by_name["head_no_decay"]["weight_decay"] == 0.0 and by_name["head_decay"]["weight_decay"] == 0.2
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert "backbone.visual.positional_embedding" in no_decay
    assert "head.readout.global_query" in no_decay
    params = dict(model.named_parameters())
    assert all(params[n].ndim < 2 or n.rsplit(".", 1)[-1] in NO_DECAY_LEAVES for n in no_decay)
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert "head.classifier.weight" in decayed and "head.classifier.bias" not in decayed
    assert sum(len(g["params"]) for g in groups) == sum(1 for _ in model.parameters())


def test_frozen_backbone_is_left_out():
    cfg, model = _model("model.backbone.freeze=all")
    groups = param_groups(model, cfg.optim)
    assert not any(g["name"].startswith("backbone") for g in groups)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_warmup_then_cosine_to_the_floor():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, 100, 10, 0.0) == pytest.approx(0.0)


def test_the_fused_adamw_kernel_only_where_asked():
    import torch

    cfg = load_config().optim
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))]}]
    assert build_optimizer(groups, cfg, fused=True).defaults["fused"] is True
    assert not build_optimizer(groups, cfg).defaults["fused"]  # the CPU path keeps torch's default
