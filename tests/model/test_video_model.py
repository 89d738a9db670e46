import torch

from vidprism_ds.config.schema import BackboneConfig, ModelConfig
from vidprism_ds.model.video_model import MeanPoolHead, build_video_model


def _cfg(**kw):
    return ModelConfig(backbone=BackboneConfig(arch="tiny", image_size=64), **kw)


def test_clips_to_logits_and_every_part_learns():
    built = build_video_model(_cfg(), num_classes=5, num_frames=8)
    model = built.model.train()
    clips = torch.randn(2, 8, 3, 64, 64)
    out = model(clips)
    assert out.logits.shape == (2, 5) and out.expert_weights.shape == (2, 4)
    (out.logits.sum() + out.rank_loss).backward()
    assert model.backbone.visual.conv1.weight.grad.abs().sum() > 0
    assert model.head.classifier.weight.grad.abs().sum() > 0


def test_same_seed_same_model_and_head_independent_of_backbone_size():
    a = build_video_model(_cfg(), 5, 8, seed=3).model
    b = build_video_model(_cfg(), 5, 8, seed=3).model
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)


def test_meanpool_baseline_ignores_frame_order():
    built = build_video_model(_cfg(variant="meanpool"), 4, 8)
    assert isinstance(built.model.head, MeanPoolHead)
    x_btd = torch.randn(2, 8, built.model.backbone.embed_dim)
    head = built.model.head.eval()
    torch.testing.assert_close(head(x_btd).logits, head(x_btd.flip(1)).logits)


def _times(batch, frames, burst_gap=1.0 / 30.0):
    """Sorted frame times: a sparse base with a burst of consecutive frames at the end."""
    base = torch.arange(frames // 2) * 1.0
    burst = frames // 2 + torch.arange(frames - frames // 2) * burst_gap
    return torch.cat([base, burst]).expand(batch, -1).clone()


def test_the_classifier_hands_frame_times_to_the_head():
    cfg = _cfg()
    cfg.head.frame_time_encoding = True
    model = build_video_model(cfg, 5, 8).model.eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.frame_time_encoding.weight, std=0.5)
    clips = torch.randn(2, 8, 3, 64, 64)
    with torch.no_grad():
        burst = model(clips, frame_times=_times(2, 8)).logits
        slower_burst = model(clips, frame_times=_times(2, 8, burst_gap=0.2)).logits
        without = model(clips).logits
    assert (burst - slower_burst).abs().amax() > 1e-4
    assert (burst - without).abs().amax() > 1e-4


def test_meanpool_ignores_frame_times_and_default_models_have_no_time_parameters():
    built = build_video_model(_cfg(variant="meanpool"), 4, 8)
    x_btd = torch.randn(2, 8, built.model.backbone.embed_dim)
    head = built.model.head.eval()
    torch.testing.assert_close(head(x_btd, frame_times=_times(2, 8)).logits, head(x_btd).logits, atol=0, rtol=0)
    vidprism_keys = list(build_video_model(_cfg(), 4, 8).model.state_dict())
    homogeneous_keys = list(build_video_model(_cfg(variant="homogeneous"), 4, 8).model.state_dict())
    assert not any("frame_time" in k for k in vidprism_keys + homogeneous_keys)
    assert not any(k.startswith("head.fusion.") for k in homogeneous_keys)
