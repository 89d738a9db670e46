"""The CLIP backbone (docs/model.md#backbone, docs/backbone.md): open_clip towers built offline, and the frame encoder.

``build_frame_encoder(cfg)`` is the entry point: it builds an open_clip ``CLIP`` for
``cfg.arch`` (random init, or weights from ``cfg.pretrained_path``), and wraps its visual tower in a
``FrameEncoder`` that maps clips (B, T, 3, H, W) to frame embeddings (B, T, D). The ``CLIP`` model is
returned too because its text tower computes the class text embeddings
(``vidprism_ds.model.text_embeddings``); it shares the visual tower with the frame encoder, so keep it
only as long as the text embeddings need it.

Nothing here touches the network: the named architectures come from open_clip's bundled JSON configs
and are constructed directly (no ``create_model``, no pretrained tags, no hub), and the tokenizer uses
open_clip's bundled BPE vocabulary.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from typing import Any

import open_clip
import torch
from open_clip.model import CLIP, _build_vision_tower
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import VisionTransformer
from torch import nn

from vidprism_ds.config.schema import BackboneConfig, FreezeMode
from vidprism_ds.config.validation import TINY_ARCH, check_backbone_arch, check_trainable_blocks, parse_checkpointing
from vidprism_ds.model.block_stack import BlockStack, use_block_stack
from vidprism_ds.model.clip_weights import load_clip_weights, weights_file_digest
from vidprism_ds.model.tower_attention import use_packed_attention

@dataclass(frozen=True)
class TransformerBlock:
    name: str  # qualified name inside the module it was found in
    module: nn.Module  # an open_clip ``ResidualAttentionBlock``
    checkpointed: bool  # its transformer recomputes it in the backward pass


def transformer_blocks(module: nn.Module) -> list[TransformerBlock]:
    """Every residual block of the open_clip transformers inside ``module`` (a ``VideoClassifier``, a
    ``FrameEncoder``, a bare tower), in module order: the one way the code finds the ViT blocks (to
    freeze, compile, shard with tensor parallelism, or measure them). open_clip keeps a tower's blocks in
    the ``resblocks`` list of its ``Transformer`` and sets ``grad_checkpointing`` on that ``Transformer``
    (all blocks or none); a ``BlockStack`` flags each block."""
    found = []
    for name, holder in module.named_modules():
        resblocks = getattr(holder, "resblocks", None)
        if isinstance(resblocks, nn.ModuleList):
            prefix = f"{name}.resblocks" if name else "resblocks"
            flags = (holder.checkpointed if isinstance(holder, BlockStack)
                     else [bool(getattr(holder, "grad_checkpointing", False))] * len(resblocks))
            found += [TransformerBlock(f"{prefix}.{i}", block, flag)
                      for i, (block, flag) in enumerate(zip(resblocks, flags))]
    return found


# Every supported arch uses CLIP's BPE vocabulary (49408 tokens) with 77-token prompts.
CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408

# "tiny": the same ViT-B family layout, shrunk so that a few 8-frame clips run fwd+bwd on a laptop
# CPU in milliseconds. 2 heads of width 32 keep multi-head attention non-trivial; the text tower keeps
# the real vocabulary and context so real prompts tokenise and encode exactly as for ViT-B/16.
TINY_EMBED_DIM = 64
TINY_WIDTH = 64
TINY_HEAD_WIDTH = 32
TINY_LAYERS = 2
TINY_PATCH_SIZE = 16

FREEZE_MODES = typing.get_args(FreezeMode)


# --------------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------------


def clip_model_config(arch: str, image_size: int) -> dict[str, Any]:
    """open_clip's model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) for ``arch`` at
    ``image_size``: the bundled JSON for the named archs, the tiny spec otherwise."""
    check_backbone_arch(arch)
    if arch == TINY_ARCH:
        model_cfg: dict[str, Any] = {
            "embed_dim": TINY_EMBED_DIM,
            "vision_cfg": {"image_size": image_size, "layers": TINY_LAYERS, "width": TINY_WIDTH,
                           "head_width": TINY_HEAD_WIDTH, "patch_size": TINY_PATCH_SIZE},
            "text_cfg": {"context_length": CLIP_CONTEXT_LENGTH, "vocab_size": CLIP_VOCAB_SIZE,
                         "width": TINY_WIDTH, "heads": TINY_WIDTH // TINY_HEAD_WIDTH, "layers": TINY_LAYERS},
        }
    else:  # one of vidprism_ds.config.validation.NAMED_ARCHS
        # A plain name (no "hf-hub:"/"local-dir:" schema) is looked up in open_clip's bundled configs
        # only; the returned dict is a private deep copy.
        model_cfg = open_clip.get_model_config(arch)
        if model_cfg is None:
            raise ValueError(f"open_clip {open_clip.__version__} has no bundled config for {arch!r}")
        model_cfg["vision_cfg"]["image_size"] = image_size

    patch_size = model_cfg["vision_cfg"]["patch_size"]
    if image_size % patch_size != 0:
        raise ValueError(f"model.backbone.image_size: {image_size} is not a multiple of {arch}'s "
                         f"patch size {patch_size}")
    return model_cfg


def build_clip(cfg: BackboneConfig, *, seed: int = 0) -> CLIP:
    """Builds an open_clip ``CLIP`` for ``cfg.arch`` and loads ``cfg.pretrained_path`` if given.

    The random initialisation is drawn from a private generator state seeded with ``seed`` (the global
    RNG is left as it was), so a randomly initialised backbone is reproducible and identified by
    ``backbone_identity``. ``cfg.quick_gelu`` is True by default because OpenAI's CLIP (the paper's
    backbone) was trained with QuickGELU; open_clip's own LAION-trained weights use GELU and need it False.
    """
    model_cfg = clip_model_config(cfg.arch, cfg.image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**model_cfg, quick_gelu=cfg.quick_gelu)
    if cfg.pretrained_path:
        load_clip_weights(model, cfg.pretrained_path)
    return model


def build_shallow_frame_encoder(cfg: BackboneConfig, layers: int, *, seed: int = 0) -> FrameEncoder:
    """A ``FrameEncoder`` with the blocks of ``cfg.arch`` (width, heads, MLP width, patch grid, output
    width, freeze mode, checkpointing) but only ``layers`` of them, and no text tower.

    ``vidprism_ds.train.memory`` measures activations on it: every block of a tower has the same shape,
    so two shallow towers give the per-block figure of a 48-block ViT-bigG/14 without building its 1.8 B
    weights (plus a 0.7 B text tower) on the CPU. ``freeze="partial"`` keeps at most ``layers`` blocks
    trainable. open_clip's ``_build_vision_tower`` is the function ``CLIP`` builds its visual tower with.
    """
    model_cfg = clip_model_config(cfg.arch, cfg.image_size)
    vision_cfg = {**model_cfg["vision_cfg"], "layers": layers}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        visual = _build_vision_tower(model_cfg["embed_dim"], vision_cfg, quick_gelu=cfg.quick_gelu)
    return FrameEncoder(visual, freeze=cfg.freeze, trainable_blocks=min(cfg.trainable_blocks, layers),
                        grad_checkpointing=cfg.grad_checkpointing)


def backbone_identity(cfg: BackboneConfig, *, seed: int = 0) -> str:
    """A string that changes whenever the towers ``build_clip`` returns would compute differently:
    the arch plus the SHA-256 of the weights file, or plus the image size and seed of a random init
    (the image size matters there: it changes how many random numbers the visual tower draws before
    the text tower is initialised). Used to key the class text embedding cache."""
    activation = "" if cfg.quick_gelu else "-gelu"
    if cfg.pretrained_path:
        return f"{cfg.arch}{activation}:sha256-{weights_file_digest(cfg.pretrained_path)}"
    return f"{cfg.arch}{activation}-{cfg.image_size}px:random-init-seed-{seed}"


@functools.lru_cache(maxsize=None)
def _bundled_clip_tokenizer(context_length: int) -> SimpleTokenizer:
    return SimpleTokenizer(context_length=context_length)


def get_tokenizer(arch: str) -> SimpleTokenizer:
    """CLIP's BPE tokenizer from open_clip's bundled vocabulary file (offline). All supported archs,
    tiny included, share it; the instance is cached because reading the vocabulary takes ~0.1 s."""
    check_backbone_arch(arch)
    return _bundled_clip_tokenizer(CLIP_CONTEXT_LENGTH)


# --------------------------------------------------------------------------------------------------
# Frame encoder
# --------------------------------------------------------------------------------------------------


class FrameEncoder(nn.Module):
    """CLIP's image encoder applied to every frame: (B, T, 3, H, W) -> (B, T, D).

    Per frame this is exactly CLIP's ``encode_image``: class token -> ln_post -> proj. The parameters
    live under ``visual.`` in OpenAI's naming, like the official VidPrism backbone's state dict.

    Freeze modes: ``"none"`` trains everything; ``"all"`` freezes the tower, keeps it in eval mode and
    runs it without autograd; ``"partial"`` trains only the last ``trainable_blocks`` transformer
    blocks plus ``ln_post`` and ``proj`` (autograd then records nothing for the frozen early blocks,
    because neither their inputs nor their weights need gradients).

    Gradient checkpointing (``grad_checkpointing``: a ``model.backbone.grad_checkpointing`` value) applies
    to the blocks autograd records (``recorded_blocks``): "full" recomputes all of them, "blocks:K" the
    first K, "none" none. "auto" starts as none; the trainer resolves it from the memory estimate
    (``vidprism_ds.train.memory.checkpointing``) and calls ``set_grad_checkpointing``. The tower's block
    loop is a ``BlockStack`` (per-block checkpointing) and, with ``packed_attention``, its attention a
    ``PackedSelfAttention`` (one SDPA call on the batch-first layout); parameter names are unchanged.
    """

    def __init__(self, visual: VisionTransformer, freeze: FreezeMode = "none", trainable_blocks: int = 0,
                 grad_checkpointing: bool | str = False, packed_attention: bool = True):
        super().__init__()
        if freeze not in FREEZE_MODES:
            raise ValueError(f"model.backbone.freeze: {freeze!r} is not one of {list(FREEZE_MODES)}")
        check_trainable_blocks(freeze, trainable_blocks, num_blocks=len(transformer_blocks(visual)))
        use_block_stack(visual)
        if packed_attention:
            use_packed_attention([block.module for block in transformer_blocks(visual)])
        self.visual = visual
        self.freeze = freeze
        self.trainable_blocks = trainable_blocks
        self._apply_freeze()
        self.checkpointing_policy = parse_checkpointing(grad_checkpointing)
        if self.checkpointing_policy.mode != "auto":
            self.set_grad_checkpointing(self.checkpointing_policy.checkpointed_blocks(self.recorded_blocks))

    @property
    def embed_dim(self) -> int:
        """D: CLIP's joint embedding width (512 for ViT-B/16, 768 for ViT-L/14, 1024 for ViT-H/14 and
        ViT-g/14, 1280 for ViT-bigG/14)."""
        return int(self.visual.output_dim)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.visual.image_size)

    @property
    def num_blocks(self) -> int:
        return len(transformer_blocks(self.visual))

    def _apply_freeze(self) -> None:
        train_all = self.freeze == "none"
        for parameter in self.visual.parameters():
            parameter.requires_grad_(train_all)
        if self.freeze == "partial":
            blocks = [block.module for block in transformer_blocks(self.visual)]
            trainable: list[nn.Module] = blocks[len(blocks) - self.trainable_blocks:]
            trainable.append(self.visual.ln_post)
            for module in trainable:
                for parameter in module.parameters():
                    parameter.requires_grad_(True)
            self.visual.proj.requires_grad_(True)
        if self.freeze == "all":
            self.visual.eval()

    @property
    def recorded_blocks(self) -> int:
        """The transformer blocks autograd records: all, the last ``trainable_blocks``, or none (frozen)."""
        return {"none": self.num_blocks, "partial": self.trainable_blocks, "all": 0}[self.freeze]

    @property
    def checkpointed_blocks(self) -> int:
        return sum(block.checkpointed for block in transformer_blocks(self.visual))

    def set_grad_checkpointing(self, enable: bool | int = True) -> None:
        """Recompute blocks in the backward pass instead of storing their activations: True all the
        recorded blocks, False none, an integer K the first K of them."""
        recorded = self.recorded_blocks
        count = (recorded if enable else 0) if isinstance(enable, bool) else int(enable)
        if not 0 <= count <= recorded:
            raise ValueError(f"model.backbone.grad_checkpointing: {count} blocks asked for, {recorded} train")
        first_recorded = self.num_blocks - recorded
        use_block_stack(self.visual).checkpoint_blocks(range(first_recorded, first_recorded + count))

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(mode)
        if self.freeze == "all":
            # a frozen tower always behaves as at inference (patch dropout etc. off)
            self.visual.eval()
        return self

    def forward(self, clips_btchw: torch.Tensor) -> torch.Tensor:
        if clips_btchw.ndim != 5 or clips_btchw.shape[2] != 3:
            raise ValueError(f"FrameEncoder expects clips of shape (B, T, 3, H, W), got {tuple(clips_btchw.shape)}")
        batch, frames, channels, height, width = clips_btchw.shape
        if (height, width) != self.image_size:
            # the positional embedding is sized for one patch grid; say so instead of a broadcast error
            raise ValueError(f"FrameEncoder was built for {self.image_size[0]}x{self.image_size[1]} frames "
                             f"(model.backbone.image_size), got {height}x{width}")
        frames_nchw = clips_btchw.reshape(batch * frames, channels, height, width)
        if self.freeze == "all":
            with torch.no_grad():
                x_nd = self.visual(frames_nchw)
        else:
            x_nd = self.visual(frames_nchw)
        return x_nd.reshape(batch, frames, -1)


def build_frame_encoder(cfg: BackboneConfig, *, seed: int = 0) -> tuple[FrameEncoder, CLIP]:
    """Builds the CLIP model for ``cfg`` and its ``FrameEncoder`` (freeze mode and gradient
    checkpointing from ``cfg``). Returns ``(frame_encoder, clip_model)``; they share the visual tower."""
    clip_model = build_clip(cfg, seed=seed)
    frame_encoder = FrameEncoder(clip_model.visual, freeze=cfg.freeze, trainable_blocks=cfg.trainable_blocks,
                                 grad_checkpointing=cfg.grad_checkpointing)
    return frame_encoder, clip_model


__all__ = [
    "CLIP_CONTEXT_LENGTH", "FREEZE_MODES", "FrameEncoder",
    "backbone_identity", "build_clip", "build_frame_encoder", "build_shallow_frame_encoder", "clip_model_config",
    "get_tokenizer",
]
