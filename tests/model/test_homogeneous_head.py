import copy

import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import BackboneConfig, ConfigError, HeadConfig, LossWeights, ModelConfig
from vidprism_ds.model.homogeneous_head import HomogeneousHead
from vidprism_ds.model.losses import combine_losses
from vidprism_ds.model.video_model import build_video_model
from tests.model.dispatch_recorder import RecordingDispatcher

DIM, CLASSES, FRAMES = 32, 5, 12


def _head(**kw):
    torch.manual_seed(0)
    return HomogeneousHead(DIM, CLASSES, HeadConfig(**kw), max_frames=FRAMES)


def test_every_expert_reads_the_full_rate_stream():
    head = _head().eval()
    head.dispatcher = RecordingDispatcher()
    x_btd = torch.randn(3, FRAMES, DIM)
    out = head(x_btd)
    assert len(head.dispatcher.inputs) == 4 == head.num_experts
    for stream in head.dispatcher.inputs:
        assert torch.equal(stream, x_btd)
    assert out.logits.shape == (3, CLASSES) and out.expert_weights.shape == (3, 4)
    assert out.expert_means.shape == (3, 4, DIM) and out.keep_indices == []
    torch.testing.assert_close(out.expert_weights.sum(-1), torch.ones(3))
    assert head.expert_stream_lengths(FRAMES) == [FRAMES] * 4


def test_experts_are_the_vidprism_architecture_but_differently_initialised():
    from vidprism_ds.model.head import VidPrismHead

    head = _head()
    vidprism = VidPrismHead(DIM, CLASSES, HeadConfig(), max_frames=FRAMES)
    assert sorted(head.experts) == sorted(vidprism.experts)
    shapes = {n: p.shape for n, p in head.experts["0"].named_parameters()}
    assert shapes == {n: p.shape for n, p in vidprism.experts["0"].named_parameters()}
    # identical experts on an identical input would be one expert E times over
    assert not torch.equal(head.experts["0"].attn.in_proj_weight, head.experts["1"].attn.in_proj_weight)


def test_without_position_embeddings_it_is_a_frame_bag_and_with_them_it_is_not():
    x_btd = torch.randn(2, FRAMES, DIM)
    perm = torch.randperm(FRAMES, generator=torch.Generator().manual_seed(3))
    plain = _head().eval()
    torch.testing.assert_close(plain(x_btd).logits, plain(x_btd[:, perm]).logits, atol=1e-5, rtol=1e-5)
    with_pos = _head(expert_pos_embed=True).eval()
    assert (with_pos(x_btd).logits - with_pos(x_btd[:, perm]).logits).abs().max() > 1e-4


def test_gradients_reach_every_parameter():
    head = _head().train()
    x_btd = torch.randn(4, FRAMES, DIM)
    labels = torch.randint(0, CLASSES, (4,))
    combine_losses(LossWeights(), head(x_btd), labels, torch.randn(CLASSES, DIM)).total.backward()
    assert [n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().max() == 0] == []


def test_scaled_experts_are_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"^model\.head\.experts_per_rate"):
        _head(experts_per_rate=2)


def test_selected_by_config_and_built_with_the_backbone():
    cfg = load_config(None, ["model.variant=homogeneous", "model.backbone.image_size=32", "data.image_size=32"])
    assert cfg.model.variant == "homogeneous"
    built = build_video_model(cfg.model, num_classes=CLASSES, num_frames=4)
    assert isinstance(built.model.head, HomogeneousHead)
    out = built.model.eval()(torch.randn(2, 4, 3, 32, 32))
    assert out.logits.shape == (2, CLASSES)
    with pytest.raises(ConfigError, match=r"^model\.variant"):
        load_config(None, ["model.variant=mote"])


def test_expert_parallel_code_finds_and_places_its_experts():
    from vidprism_ds.parallel import find_expert_head, plan_placement

    model = build_video_model(ModelConfig(variant="homogeneous", backbone=BackboneConfig(image_size=32)),
                              CLASSES, 4).model
    head = find_expert_head(model)
    assert isinstance(head, HomogeneousHead)
    placement = plan_placement(head, 2)
    # equal streams, equal experts: two per rank
    assert sorted(len(placement.local_experts(k)) for k in range(2)) == [2, 2]


def ep2_forward_matches_single_process():
    """Worker (every rank of tests.parallel.harness.run_workers): the homogeneous head with its experts
    spread over 2 EP ranks gives the unsharded head's outputs and gradients for this rank's clips."""
    import torch.distributed as dist

    from vidprism_ds.parallel import init_expert_parallel, parallelize_model

    rank = dist.get_rank()
    ctx = init_expert_parallel(2)
    head = _head()
    reference = copy.deepcopy(head)
    parallelize_model(head, ctx)
    x_btd = torch.randn(3, FRAMES, DIM, generator=torch.Generator().manual_seed(rank))
    out, ref = head(x_btd), reference(x_btd)
    out.logits.sum().backward()
    ref.logits.sum().backward()
    return {"local": head.experts.global_ids, "logits_diff": (out.logits - ref.logits).abs().max().item(),
            "classifier_grad_diff": (head.classifier.weight.grad - reference.classifier.weight.grad).abs().max().item()}


@pytest.mark.slow
def test_expert_parallel_ep2_equals_single_process():
    from tests.parallel.harness import run_workers

    reports = run_workers("tests.model.test_homogeneous_head:ep2_forward_matches_single_process", 2)
    assert sorted(e for r in reports for e in r["local"]) == [0, 1, 2, 3]
    for report in reports:
        assert report["logits_diff"] < 1e-5 and report["classifier_grad_diff"] < 1e-5


def test_fusion_option_mixes_the_full_rate_streams_and_changes_only_that():
    plain, fused = _head().eval(), _head(homogeneous_fusion=True).eval()
    plain_state, fused_state = plain.state_dict(), fused.state_dict()
    assert sorted({n.split(".")[0] for n in set(fused_state) - set(plain_state)}) == ["fusion"]
    for name, tensor in plain_state.items():  # the fusion is built last: every other weight is the same
        assert torch.equal(fused_state[name], tensor), name
    fused.dispatcher = RecordingDispatcher()
    x_btd = torch.randn(3, FRAMES, DIM)
    out = fused(x_btd)
    # every stream keeps the full rate, and the fusion made them differ from the frames and each other
    assert [s.shape for s in fused.dispatcher.inputs] == [(3, FRAMES, DIM)] * 4
    assert all((s - x_btd).abs().amax() > 1e-4 for s in fused.dispatcher.inputs)
    assert (fused.dispatcher.inputs[0] - fused.dispatcher.inputs[3]).abs().amax() > 1e-4
    assert (out.logits - plain(x_btd).logits).abs().amax() > 1e-4
    assert fused.expert_stream_lengths(FRAMES) == [FRAMES] * 4


@pytest.mark.parametrize("mode", ["default", "official"])
def test_fusion_option_trains_every_parameter(mode):
    head = _head(homogeneous_fusion=True, mode=mode).train()
    x_btd = torch.randn(4, FRAMES, DIM)
    labels = torch.randint(0, CLASSES, (4,))
    combine_losses(LossWeights(), head(x_btd), labels, torch.randn(CLASSES, DIM)).total.backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    if mode == "default":
        assert no_grad == []
    else:  # last writer wins (docs/model.md): the silenced pairs learn nothing, as in VidPrism's official mode
        assert no_grad and all(n.startswith("fusion.") for n in no_grad)


@pytest.mark.parametrize("overrides, message", [
    (["model.variant=vidprism"], "homogeneous only"),
    (["model.variant=homogeneous", "model.head.sampling_rates=[2,4]"], "needs a fast"),
    (["model.variant=homogeneous", "model.head.mode=official"], "official"),
])
def test_fusion_option_is_refused_where_it_cannot_mean_anything(overrides, message):
    with pytest.raises(ConfigError, match=rf"^model\.head\.homogeneous_fusion: .*{message}"):
        load_config(None, ["model.head.homogeneous_fusion=true", *overrides])
    with pytest.raises(ConfigError, match=r"^model\.head\.homogeneous_fusion"):
        _head(homogeneous_fusion=True, sampling_rates=[8, 16])


def test_fusion_option_is_selected_by_config():
    cfg = load_config(None, ["model.variant=homogeneous", "model.head.homogeneous_fusion=true",
                             "model.backbone.image_size=32", "data.image_size=32"])
    built = build_video_model(cfg.model, num_classes=CLASSES, num_frames=4)
    assert built.model.head.fusion is not None
    assert built.model.eval()(torch.randn(2, 4, 3, 32, 32)).logits.shape == (2, CLASSES)
