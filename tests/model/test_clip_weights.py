"""Loading CLIP weights (open_clip and OpenAI formats) and the official VidPrism backbone state."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from open_clip.model import CLIP
from torch import nn

from vidprism_ds.config.schema import BackboneConfig
from vidprism_ds.model.backbone import FrameEncoder, build_clip, build_frame_encoder
from vidprism_ds.model.clip_weights import (
    ClipWeightsError,
    is_torchscript_archive,
    load_official_visual_state,
    read_clip_state_dict,
)

IMAGE_SIZE = 64
TEXT = torch.tensor([[49406, 320, 1125, 539, 49407] + [0] * 72])  # "<sot> a photo of <eot>"


def _tiny_cfg(path=None, image_size=IMAGE_SIZE, **kw) -> BackboneConfig:
    return BackboneConfig(arch="tiny", image_size=image_size, pretrained_path=str(path) if path else None, **kw)


def _fp16_rounded_tiny_clip(seed: int) -> nn.Module:
    """A tiny CLIP whose weights are exactly representable in fp16 (OpenAI ships fp16 weights), so a
    fp16 round trip through a file must reproduce it bit for bit."""
    model = build_clip(_tiny_cfg(), seed=seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    return model.eval()


def _outputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_image(images), model.encode_text(TEXT)


def _assert_same_model(loaded: nn.Module, reference: nn.Module) -> None:
    loaded_sd, reference_sd = loaded.state_dict(), reference.state_dict()
    assert loaded_sd.keys() == reference_sd.keys()
    for key in reference_sd:
        assert loaded_sd[key].dtype == torch.float32, key
        assert torch.equal(loaded_sd[key], reference_sd[key]), key
    for got, expected in zip(_outputs(loaded.eval()), _outputs(reference)):
        assert torch.equal(got, expected)


class _OpenAIArchiveLayout(nn.Module):
    """Holds a CLIP's modules under OpenAI's attribute names plus the metadata scalars OpenAI's
    TorchScript archives carry, so that tracing it yields an archive with OpenAI's state-dict layout."""

    def __init__(self, clip_model: nn.Module, image_size: int):
        super().__init__()
        for name in ("visual", "transformer", "token_embedding", "ln_final"):
            setattr(self, name, getattr(clip_model, name))
        self.positional_embedding = clip_model.positional_embedding
        self.text_projection = clip_model.text_projection
        self.logit_scale = clip_model.logit_scale
        self.register_buffer("input_resolution", torch.tensor(image_size))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.visual(image)


class _NotWeights:
    """A pickled object that a weights_only load must refuse."""


# --------------------------------------------------------------------------------------------------
# Full CLIP weights
# --------------------------------------------------------------------------------------------------


def test_open_clip_checkpoint_round_trip(tmp_path):
    reference = build_clip(_tiny_cfg(), seed=1).eval()
    # open_clip's training checkpoints nest the weights under "state_dict", saved from DDP
    checkpoint = {"epoch": 3, "name": "tiny",
                  "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}
    path = tmp_path / "epoch_3.pt"
    torch.save(checkpoint, path)

    loaded = build_clip(_tiny_cfg(path), seed=2)
    _assert_same_model(loaded, reference)
    assert read_clip_state_dict(path)[1] == "state_dict"


def test_open_clip_custom_text_layout_is_accepted(tmp_path):
    reference = build_clip(_tiny_cfg(), seed=1).eval()
    text_names = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection")
    nested = {(f"text.{k}" if k.startswith(text_names) else k): v for k, v in reference.state_dict().items()}
    path = tmp_path / "custom_text.pt"
    torch.save(nested, path)
    _assert_same_model(build_clip(_tiny_cfg(path), seed=2), reference)


def test_openai_fp16_state_dict_round_trip(tmp_path):
    reference = _fp16_rounded_tiny_clip(seed=1)
    openai_sd = {k: v.half() for k, v in reference.state_dict().items()}
    openai_sd.update(input_resolution=torch.tensor(IMAGE_SIZE), context_length=torch.tensor(77),
                     vocab_size=torch.tensor(49408))
    path = tmp_path / "ViT-tiny.pt"
    torch.save(openai_sd, path)
    assert not is_torchscript_archive(path)
    _assert_same_model(build_clip(_tiny_cfg(path), seed=2), reference)


def test_openai_torchscript_archive_round_trip(tmp_path):
    reference = _fp16_rounded_tiny_clip(seed=1)
    layout = _OpenAIArchiveLayout(build_clip(_tiny_cfg(), seed=1), IMAGE_SIZE).eval()
    layout.load_state_dict({**reference.state_dict(), "input_resolution": torch.tensor(IMAGE_SIZE),
                            "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)})
    path = tmp_path / "ViT-tiny-jit.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        # the fast and slow attention paths trace to different graphs; the check is irrelevant here
        scripted = torch.jit.trace(layout, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),), check_trace=False)
        scripted = scripted.half()  # OpenAI's archives store fp16 weights
        torch.jit.save(scripted, str(path))
    assert is_torchscript_archive(path)
    with pytest.raises(RuntimeError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(path, weights_only=True)  # why the archive needs its own path

    state_dict, weights_format = read_clip_state_dict(path)
    assert weights_format == "torchscript"
    assert "input_resolution" not in state_dict and state_dict["visual.proj"].dtype == torch.float16
    _assert_same_model(build_clip(_tiny_cfg(path), seed=2), reference)


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    reference = build_clip(_tiny_cfg(), seed=1).eval()
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    _assert_same_model(build_clip(_tiny_cfg(path), seed=2), reference)


def test_mismatched_file_fails_naming_the_file_and_the_keys(tmp_path):
    state_dict = build_clip(_tiny_cfg(), seed=1).state_dict()
    del state_dict["visual.proj"]
    state_dict["ln_final.weight"] = torch.zeros(32)
    state_dict["bogus.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pt"
    torch.save(state_dict, path)
    with pytest.raises(ClipWeightsError) as caught:
        build_clip(_tiny_cfg(path))
    message = str(caught.value)
    for fragment in (str(path), "1 missing keys", "visual.proj", "1 unexpected keys", "bogus.weight",
                     "ln_final.weight (file (32,), model (64,))"):
        assert fragment in message


def test_weights_of_another_architecture_fail_clearly(tmp_path):
    # a narrower, deeper CLIP of the same family stands in for "weights of another arch"
    other = CLIP(32, {"image_size": IMAGE_SIZE, "layers": 3, "width": 32, "head_width": 16, "patch_size": 16},
                 {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2})
    path = tmp_path / "other.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(ClipWeightsError, match="unexpected keys.*resblocks.2.*shape mismatches") as caught:
        build_clip(_tiny_cfg(path))
    assert str(path) in str(caught.value)


def test_unsafe_missing_and_wrong_kind_of_files_are_refused(tmp_path):
    pickled = tmp_path / "object.pt"
    torch.save(_NotWeights(), pickled)
    with pytest.raises(ClipWeightsError, match="weights_only"):
        read_clip_state_dict(pickled)
    with pytest.raises(ClipWeightsError, match="not found"):
        read_clip_state_dict(tmp_path / "absent.pt")
    vidprism = tmp_path / "vidprism.pt"
    torch.save({"epoch": 1, "model_state_dict": {}, "fusion_model_state_dict": {}}, vidprism)
    with pytest.raises(ClipWeightsError, match="load_official_visual_state"):
        read_clip_state_dict(vidprism)


def test_weights_at_another_image_size_get_an_interpolated_positional_embedding(tmp_path, caplog):
    source = build_clip(_tiny_cfg(), seed=1)
    path = tmp_path / "w64.pt"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.WARNING):
        loaded = build_clip(_tiny_cfg(path, image_size=96), seed=2)
    assert loaded.visual.positional_embedding.shape == (6 * 6 + 1, 64)
    # the class-token row is kept; the patch grid is resampled
    assert torch.equal(loaded.visual.positional_embedding[0], source.visual.positional_embedding[0])
    assert torch.equal(loaded.visual.conv1.weight, source.visual.conv1.weight)
    assert "resizing the visual positional embedding from a 4x4 to a 6x6" in caplog.text


# --------------------------------------------------------------------------------------------------
# The official VidPrism checkpoint's backbone
# --------------------------------------------------------------------------------------------------


def _official_visual_names(layers: int) -> set[str]:
    """Parameter names of the official clip/model.py VisualTransformer (read from its source)."""
    block = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
             "attn.out_proj.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
             "ln_2.weight", "ln_2.bias"]
    names = {"conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
             "ln_post.weight", "ln_post.bias", "proj"}
    names.update(f"transformer.resblocks.{i}.{name}" for i in range(layers) for name in block)
    return names


def test_official_visual_names_coincide_with_open_clip():
    encoder, _ = build_frame_encoder(_tiny_cfg())
    assert set(encoder.visual.state_dict()) == _official_visual_names(encoder.num_blocks)


def _official_checkpoint(visual: nn.Module) -> dict:
    # VideoCLIP.state_dict() under DDP: "module.visual.*" plus "module.logit_scale"; fp16 as trained
    model_state = {f"module.visual.{k}": v.half() for k, v in visual.state_dict().items()}
    model_state["module.logit_scale"] = torch.tensor(4.6052)
    return {"epoch": 29, "model_state_dict": model_state, "fusion_model_state_dict": {"head.weight": torch.zeros(1)},
            "optimizer_state_dict": {}}


def test_official_model_state_dict_import(tmp_path):
    source = _fp16_rounded_tiny_clip(seed=5)
    path = tmp_path / "model_best.pt"
    torch.save(_official_checkpoint(source.visual), path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)

    encoder, _ = build_frame_encoder(_tiny_cfg(), seed=6)
    clips = torch.randn(2, 4, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = encoder.eval()(clips)
    load_official_visual_state(encoder, checkpoint["model_state_dict"])
    with torch.no_grad():
        after = encoder(clips)
        open_clip_out = source.encode_image(clips.flatten(0, 1)).view(2, 4, -1)
        # the same tower as the encoder's (packed SDPA attention) on the source's weights: bit for bit
        expected = FrameEncoder(source.visual).eval()(clips)
    assert not torch.equal(before, expected)
    assert torch.equal(after, expected)
    torch.testing.assert_close(after, open_clip_out, rtol=0, atol=1e-5)  # open_clip's attention, rounding apart

    # the whole checkpoint dict is accepted as well
    other, _ = build_frame_encoder(_tiny_cfg(), seed=7)
    load_official_visual_state(other, checkpoint)
    assert torch.equal(other.visual.proj, source.visual.proj)


def test_official_import_rejects_foreign_or_incomplete_states():
    source = build_clip(_tiny_cfg(), seed=5)
    encoder, _ = build_frame_encoder(_tiny_cfg())
    joint = _official_checkpoint(source.visual)["model_state_dict"]
    joint["module.visual.time_embedding"] = torch.zeros(8, 64)  # the official "joint" variant
    with pytest.raises(ClipWeightsError, match="unexpected keys.*time_embedding"):
        load_official_visual_state(encoder, joint)

    foreign = _official_checkpoint(source.visual)["model_state_dict"]
    foreign["module.head.weight"] = torch.zeros(1)
    with pytest.raises(ClipWeightsError, match="outside the visual tower.*head.weight"):
        load_official_visual_state(encoder, foreign)

    partial = _official_checkpoint(source.visual)["model_state_dict"]
    del partial["module.visual.ln_post.bias"]
    with pytest.raises(ClipWeightsError, match="missing keys.*ln_post.bias"):
        load_official_visual_state(encoder, partial)

    with pytest.raises(ClipWeightsError, match="no 'visual.' keys"):
        load_official_visual_state(encoder, {"logit_scale": torch.tensor(1.0)})
