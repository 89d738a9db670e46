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
