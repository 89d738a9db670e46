"""Per-block gradient checkpointing (vidprism_ds.model.block_stack, FrameEncoder.set_grad_checkpointing)."""

from __future__ import annotations

import pytest
import torch

from vidprism_ds.config.schema import BackboneConfig, ConfigError
from vidprism_ds.model.backbone import build_frame_encoder, build_shallow_frame_encoder, transformer_blocks
from vidprism_ds.model.block_stack import BlockStack

IMAGE = 32


def _encoder(layers: int = 4, **overrides):
    return build_shallow_frame_encoder(BackboneConfig(arch="tiny", image_size=IMAGE, **overrides), layers, seed=3)


def _clips(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed))


def _output_and_grads(encoder) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    encoder.zero_grad(set_to_none=True)
    out = encoder(_clips())
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


def _forward_calls(encoder) -> list[int]:
    """How often each block's forward runs in one forward + backward."""
    calls = [0] * encoder.num_blocks
    handles = [b.module.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, b in enumerate(transformer_blocks(encoder))]
    _output_and_grads(encoder)
    for handle in handles:
        handle.remove()
    return calls


@pytest.mark.parametrize("policy, checkpointed", [("none", [0, 0, 0, 0]), ("full", [1, 1, 1, 1]),
                                                  ("blocks:1", [1, 0, 0, 0]), ("blocks:3", [1, 1, 1, 0]),
                                                  (True, [1, 1, 1, 1]), (False, [0, 0, 0, 0])])
def test_a_policy_recomputes_exactly_its_blocks(policy, checkpointed):
    encoder = _encoder(grad_checkpointing=policy)
    assert [int(b.checkpointed) for b in transformer_blocks(encoder)] == checkpointed
    # a checkpointed block runs its forward twice: once in forward, once again in backward
    assert _forward_calls(encoder) == [1 + c for c in checkpointed]


def test_partial_freeze_checkpoints_among_the_blocks_that_train():
    encoder = _encoder(6, freeze="partial", trainable_blocks=3, grad_checkpointing="blocks:2")
    assert encoder.recorded_blocks == 3
    assert [b.checkpointed for b in transformer_blocks(encoder)] == [False] * 3 + [True, True, False]
    encoder.set_grad_checkpointing(True)  # full: the three that train, never the frozen ones
    assert [b.checkpointed for b in transformer_blocks(encoder)] == [False] * 3 + [True] * 3
    with pytest.raises(ConfigError, match="model.backbone.grad_checkpointing: blocks:4 asks for more blocks than the 3"):
        _encoder(6, freeze="partial", trainable_blocks=3, grad_checkpointing="blocks:4")


def test_checkpointing_changes_no_number():
    reference_out, reference_grads = _output_and_grads(_encoder(grad_checkpointing="none"))
    for policy in ("blocks:2", "full"):
        out, grads = _output_and_grads(_encoder(grad_checkpointing=policy))
        assert torch.equal(out, reference_out)
        assert grads.keys() == reference_grads.keys()
        assert all(torch.equal(grads[n], reference_grads[n]) for n in grads)


def test_the_stack_keeps_the_towers_names_and_open_clips_switch():
    encoder, clip_model = build_frame_encoder(BackboneConfig(arch="tiny", image_size=IMAGE, grad_checkpointing="none"))
    assert isinstance(encoder.visual.transformer, BlockStack)
    assert all(name.startswith(("visual.", "transformer.", "token_embedding", "positional_embedding", "ln_final",
                                "text_projection", "logit_scale", "logit_bias")) for name in clip_model.state_dict())
    assert any(name.startswith("visual.transformer.resblocks.1.attn.in_proj_weight") for name in clip_model.state_dict())
    clip_model.visual.set_grad_checkpointing(True)  # open_clip's own switch still means all blocks
    assert encoder.checkpointed_blocks == encoder.num_blocks
    clip_model.visual.set_grad_checkpointing(False)
    assert encoder.checkpointed_blocks == 0


def test_auto_starts_with_nothing_recomputed_until_resolved():
    encoder = _encoder(grad_checkpointing="auto")
    assert encoder.checkpointing_policy.mode == "auto" and encoder.checkpointed_blocks == 0
