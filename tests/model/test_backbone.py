"""The CLIP frame encoder: shapes, per-frame equivalence, freeze modes, checkpointing, offline build."""

from __future__ import annotations

import socket

import pytest
import torch

from vidprism_ds.config.schema import BackboneConfig
from vidprism_ds.model.backbone import (
    FrameEncoder,
    backbone_identity,
    build_clip,
    build_frame_encoder,
    build_shallow_frame_encoder,
    clip_model_config,
    get_tokenizer,
    transformer_blocks,
)
from vidprism_ds.model.clip_weights import ClipWeightsError, check_state_dict_fits

IMAGE_SIZE = 64


def _tiny_cfg(**overrides) -> BackboneConfig:
    return BackboneConfig(arch="tiny", image_size=overrides.pop("image_size", IMAGE_SIZE), **overrides)


def _clips(batch: int = 2, frames: int = 8, size: int = IMAGE_SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --------------------------------------------------------------------------------------------------
# Shapes and equivalence with CLIP's encode_image
# --------------------------------------------------------------------------------------------------


def test_clips_map_to_frame_embeddings_equal_to_per_frame_encode_image():
    encoder, clip_model = build_frame_encoder(_tiny_cfg())
    encoder.eval()
    clips = _clips(batch=2, frames=8)
    with torch.no_grad():
        x_btd = encoder(clips)
        per_frame = torch.stack([clip_model.encode_image(clips[:, t]) for t in range(clips.shape[1])], dim=1)
    assert x_btd.shape == (2, 8, 64)
    assert encoder.embed_dim == 64
    torch.testing.assert_close(x_btd, per_frame)
    # frames are not mixed across time or clips: changing one frame changes only its own embedding
    changed = clips.clone()
    changed[1, 3] += 1.0
    with torch.no_grad():
        y_btd = encoder(changed)
    differs = (y_btd - x_btd).abs().amax(dim=-1) > 1e-6
    expected = torch.zeros(2, 8, dtype=torch.bool)
    expected[1, 3] = True
    assert torch.equal(differs, expected)


@pytest.mark.parametrize("size", [64, 96, 224])
def test_image_size_comes_from_the_config(size):
    encoder, _ = build_frame_encoder(_tiny_cfg(image_size=size))
    grid = size // 16
    assert encoder.visual.positional_embedding.shape == (grid * grid + 1, 64)
    assert encoder(_clips(batch=1, frames=2, size=size)).shape == (1, 2, 64)


def test_wrong_frame_size_or_layout_is_a_clear_error():
    encoder, _ = build_frame_encoder(_tiny_cfg())
    with pytest.raises(ValueError, match="built for 64x64 frames"):
        encoder(_clips(batch=1, frames=2, size=96))
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        encoder(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE))


def test_image_size_must_be_a_multiple_of_the_patch_size():
    with pytest.raises(ValueError, match="image_size"):
        build_clip(_tiny_cfg(image_size=100))


def test_named_architectures_use_open_clips_configs():
    b16 = clip_model_config("ViT-B-16", 224)
    l14 = clip_model_config("ViT-L-14", 336)
    b32 = clip_model_config("ViT-B-32", 224)
    assert (b16["embed_dim"], b16["vision_cfg"]["patch_size"], b16["vision_cfg"]["width"]) == (512, 16, 768)
    assert (l14["embed_dim"], l14["vision_cfg"]["patch_size"], l14["vision_cfg"]["layers"]) == (768, 14, 24)
    assert l14["vision_cfg"]["image_size"] == 336
    assert b32["vision_cfg"]["patch_size"] == 32
    # a private copy: editing it must not change open_clip's registry
    assert clip_model_config("ViT-L-14", 224)["vision_cfg"]["image_size"] == 224
    with pytest.raises(ValueError, match="is not one of"):
        clip_model_config("RN50", 224)


# open_clip's bundled configs of the giant towers (vision: layers, width, heads, MLP width; D)
GIANT_ARCHS = {"ViT-H-14": (32, 1280, 16, 5120, 1024), "ViT-g-14": (40, 1408, 16, 6144, 1024),
               "ViT-bigG-14": (48, 1664, 16, 8192, 1280)}


@pytest.mark.parametrize("arch", sorted(GIANT_ARCHS))
def test_giant_towers_build_with_open_clips_shapes(arch):
    # on the meta device: shapes without memory (a bigG CLIP is 2.5 B parameters)
    with torch.device("meta"):
        encoder, clip_model = build_frame_encoder(BackboneConfig(arch=arch, quick_gelu=False), seed=0)
    layers, width, heads, mlp_width, dim = GIANT_ARCHS[arch]
    block = encoder.visual.transformer.resblocks[0]
    assert (encoder.num_blocks, encoder.embed_dim, block.attn.num_heads) == (layers, dim, heads)
    assert tuple(block.mlp.c_fc.weight.shape) == (mlp_width, width)
    assert type(block.mlp.gelu).__name__ == "GELU"  # LAION's towers: plain GELU with quick_gelu false
    # weight files are checked key by key and shape by shape: the tower's own layout passes ...
    state = {key: torch.empty(value.shape, device="meta") for key, value in clip_model.state_dict().items()}
    check_state_dict_fits(clip_model, state, "a ViT file")
    # ... and a file of another width is refused before anything is copied
    with torch.device("meta"):
        _, other = build_frame_encoder(BackboneConfig(arch="ViT-L-14"), seed=0)
    with pytest.raises(ClipWeightsError, match="shape mismatches"):
        check_state_dict_fits(clip_model, {**state, **{k: v for k, v in other.state_dict().items() if k in state}},
                              "ViT-L-14 weights")


def test_a_shallow_tower_has_the_archs_blocks():
    cfg = BackboneConfig(arch="ViT-bigG-14", quick_gelu=False, freeze="partial", trainable_blocks=5,
                         grad_checkpointing=True)
    shallow = build_shallow_frame_encoder(cfg, 2, seed=0)
    with torch.device("meta"):
        full, _ = build_frame_encoder(cfg, seed=0)
    assert shallow.num_blocks == 2 and shallow.embed_dim == full.embed_dim == 1280
    shapes = [[tuple(p.shape) for p in e.visual.transformer.resblocks[-1].parameters()] for e in (shallow, full)]
    assert shapes[0] == shapes[1]
    assert shallow.visual.transformer.grad_checkpointing and shallow.trainable_blocks == 2  # all it has
    assert not any(p.requires_grad for p in shallow.visual.conv1.parameters())


def test_transformer_blocks_are_found_with_their_names_and_checkpointing():
    encoder, clip_model = build_frame_encoder(_tiny_cfg(grad_checkpointing=True), seed=0)
    blocks = transformer_blocks(encoder)
    assert [b.name for b in blocks] == [f"visual.transformer.resblocks.{i}" for i in range(encoder.num_blocks)]
    assert all(b.module is encoder.visual.transformer.resblocks[i] for i, b in enumerate(blocks))
    assert all(b.checkpointed for b in blocks)
    # the CLIP model also holds the text tower, whose blocks are not checkpointed here
    text = [b for b in transformer_blocks(clip_model) if not b.name.startswith("visual.")]
    assert text and [b.name for b in text][0] == "transformer.resblocks.0" and not any(b.checkpointed for b in text)
    encoder.set_grad_checkpointing(False)
    assert not any(b.checkpointed for b in transformer_blocks(encoder))


@pytest.mark.slow
def test_vit_b16_frame_encoder_has_width_512():
    encoder, clip_model = build_frame_encoder(BackboneConfig(arch="ViT-B-16", image_size=32 * 7), seed=0)
    assert encoder.embed_dim == 512 and encoder.num_blocks == 12
    assert type(clip_model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


@pytest.mark.parametrize("quick_gelu", [True, False])
def test_quick_gelu_switch_picks_the_activation_and_the_identity(quick_gelu):
    cfg = _tiny_cfg(quick_gelu=quick_gelu)
    _, clip_model = build_frame_encoder(cfg)
    expected = "QuickGELU" if quick_gelu else "GELU"
    assert type(clip_model.visual.transformer.resblocks[0].mlp.gelu).__name__ == expected
    assert type(clip_model.transformer.resblocks[0].mlp.gelu).__name__ == expected
    # a GELU tower computes other text embeddings, so it must not share their cache key
    assert (backbone_identity(cfg) == backbone_identity(_tiny_cfg())) == quick_gelu


# --------------------------------------------------------------------------------------------------
# Initialisation and identity
# --------------------------------------------------------------------------------------------------


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = build_clip(_tiny_cfg(), seed=7).state_dict()
    assert torch.equal(torch.rand(3), expected_next)
    second = build_clip(_tiny_cfg(), seed=7).state_dict()
    other = build_clip(_tiny_cfg(), seed=8).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["visual.conv1.weight"], other["visual.conv1.weight"])


def test_backbone_identity(tmp_path):
    assert backbone_identity(_tiny_cfg(), seed=3) == "tiny-64px:random-init-seed-3"
    assert backbone_identity(_tiny_cfg(), seed=3) != backbone_identity(_tiny_cfg(image_size=96), seed=3)
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"one")
    first = backbone_identity(BackboneConfig(arch="ViT-B-16", pretrained_path=str(weights)))
    weights.write_bytes(b"two")
    second = backbone_identity(BackboneConfig(arch="ViT-B-16", pretrained_path=str(weights)))
    assert first.startswith("ViT-B-16:sha256-") and first != second


def test_build_and_tokenizer_never_touch_the_network(no_network):
    encoder, clip_model = build_frame_encoder(_tiny_cfg())
    for arch in ("tiny", "ViT-B-16", "ViT-L-14"):
        clip_model_config(arch, 224)
        tokenizer = get_tokenizer(arch)
        tokens = tokenizer(["a video of a person abseiling."])
        assert tokens.shape == (1, 77)
        assert tokens[0, 0].item() == 49406  # <start_of_text>
        assert 49407 in tokens[0].tolist()  # <end_of_text>
    assert clip_model.encode_text(tokens).shape == (1, 64)
    assert get_tokenizer("tiny") is get_tokenizer("ViT-B-16")  # vocabulary read once
    with pytest.raises(ValueError):
        get_tokenizer("ViT-H-16")  # open_clip has it, this project does not build it


# --------------------------------------------------------------------------------------------------
# Freeze modes
# --------------------------------------------------------------------------------------------------


def _names_with_grad_flag(encoder: FrameEncoder) -> set[str]:
    return {name for name, p in encoder.visual.named_parameters() if p.requires_grad}


def _names_with_gradients(encoder: FrameEncoder) -> set[str]:
    return {name for name, p in encoder.visual.named_parameters()
            if p.grad is not None and p.grad.abs().sum() > 0}


def _backward(encoder: FrameEncoder) -> torch.Tensor:
    x_btd = encoder(_clips(batch=2, frames=4))
    if x_btd.requires_grad:
        weights = torch.randn(x_btd.shape, generator=torch.Generator().manual_seed(1))
        (x_btd * weights).sum().backward()
    return x_btd


def test_freeze_none_trains_every_parameter():
    encoder, _ = build_frame_encoder(_tiny_cfg(freeze="none"))
    all_names = {name for name, _ in encoder.visual.named_parameters()}
    assert _names_with_grad_flag(encoder) == all_names
    _backward(encoder)
    assert _names_with_gradients(encoder) == all_names


def test_freeze_all_runs_without_autograd_in_eval_mode():
    encoder, _ = build_frame_encoder(_tiny_cfg(freeze="all"))
    assert _names_with_grad_flag(encoder) == set()
    encoder.train()
    assert encoder.training and not encoder.visual.training
    assert not any(module.training for module in encoder.visual.modules())
    x_btd = _backward(encoder)
    assert not x_btd.requires_grad and x_btd.grad_fn is None
    assert _names_with_gradients(encoder) == set()


@pytest.mark.parametrize("trainable_blocks", [0, 1, 2])
def test_freeze_partial_trains_only_the_last_blocks_and_the_projection(trainable_blocks):
    encoder, _ = build_frame_encoder(_tiny_cfg(freeze="partial", trainable_blocks=trainable_blocks))
    names = {name for name, _ in encoder.visual.named_parameters()}
    first_trainable = 2 - trainable_blocks
    expected = {name for name in names
                if name.startswith("ln_post.") or name == "proj"
                or any(name.startswith(f"transformer.resblocks.{i}.") for i in range(first_trainable, 2))}
    assert "proj" in expected and "conv1.weight" not in expected
    assert _names_with_grad_flag(encoder) == expected
    _backward(encoder)
    assert _names_with_gradients(encoder) == expected


def test_bad_freeze_settings_are_rejected():
    with pytest.raises(ValueError, match="trainable_blocks"):
        build_frame_encoder(_tiny_cfg(freeze="partial", trainable_blocks=3))
    with pytest.raises(ValueError, match="freeze=partial"):
        build_frame_encoder(_tiny_cfg(freeze="none", trainable_blocks=1))
    with pytest.raises(ValueError, match="freeze"):
        build_frame_encoder(_tiny_cfg(freeze="some"))


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freeze,trainable_blocks", [("none", 0), ("partial", 1)])
def test_gradient_checkpointing_recomputes_blocks_and_gives_the_same_gradients(freeze, trainable_blocks):
    plain, _ = build_frame_encoder(_tiny_cfg(freeze=freeze, trainable_blocks=trainable_blocks), seed=4)
    ckpt, _ = build_frame_encoder(_tiny_cfg(freeze=freeze, trainable_blocks=trainable_blocks,
                                            grad_checkpointing=True), seed=4)
    assert ckpt.visual.transformer.grad_checkpointing and not plain.visual.transformer.grad_checkpointing

    calls = {"plain": 0, "ckpt": 0}
    last_block = -1
    # a pre-hook: the recomputation may stop early, before a forward hook would run
    plain.visual.transformer.resblocks[last_block].register_forward_pre_hook(
        lambda *_: calls.__setitem__("plain", calls["plain"] + 1))
    ckpt.visual.transformer.resblocks[last_block].register_forward_pre_hook(
        lambda *_: calls.__setitem__("ckpt", calls["ckpt"] + 1))

    out_plain = _backward(plain)
    out_ckpt = _backward(ckpt)
    torch.testing.assert_close(out_ckpt, out_plain)
    # the checkpointed block ran again during backward
    assert calls == {"plain": 1, "ckpt": 2}
    grads_plain = {n: p.grad for n, p in plain.visual.named_parameters() if p.grad is not None}
    grads_ckpt = {n: p.grad for n, p in ckpt.visual.named_parameters() if p.grad is not None}
    assert grads_plain.keys() == grads_ckpt.keys() and grads_plain
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], msg=name)
