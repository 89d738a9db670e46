"""Loading CLIP weights from local files into open_clip models (docs/backbone.md#weight-files).

Three sources are understood:

* OpenAI's released ``ViT-*.pt`` files: TorchScript archives. They are read as the zip files they are
  (``vidprism_ds.model.torchscript_archive``: tensors and module attributes only), never with
  ``torch.jit.load``, which runs an archive's code while loading.
* Plain state dicts in OpenAI's or open_clip's layout (``torch.save`` files, optionally with the
  state dict under ``"state_dict"`` and with DDP ``"module."`` prefixes; also ``.safetensors``). They
  are read with ``torch.load(weights_only=True)`` so that a downloaded file can never run code.
* The official VidPrism training checkpoint, whose ``model_state_dict`` holds only the visual tower
  under ``visual.`` (see ``load_official_visual_state``).

For ViT models OpenAI's parameter names and open_clip's ``CLIP`` names coincide key for key (the
text tower sits at the top level in both, and open_clip's ``VisionTransformer`` keeps OpenAI's
``conv1``/``class_embedding``/``ln_pre``/``transformer.resblocks.N.{ln_1,attn,ln_2,mlp.c_fc,mlp.c_proj}``
/``ln_post``/``proj`` names), so the only translation needed is dropping OpenAI's metadata entries and
undoing wrapper prefixes. Every load is checked key by key before anything is copied, and a mismatch
names the file and the first offending keys.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
from open_clip.model import resize_pos_embed
from torch import nn

from vidprism_ds.model.torchscript_archive import TorchScriptArchiveError, read_torchscript_state_dict
from vidprism_ds.utils.files import file_sha256

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# Scalars OpenAI's TorchScript archives carry next to the weights; they are not parameters.
_OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Prefixes that wrappers add in front of every key: DDP / DataParallel ("module."), and open_clip's
# CustomTextCLIP layout that nests the text tower under "text.".
_DDP_PREFIX = "module."
_CUSTOM_TEXT_PREFIX = "text."
# The official VidPrism checkpoint's backbone (VideoCLIP) also stores CLIP's logit_scale; the video
# model never uses it.
_OFFICIAL_NON_VISUAL_KEYS = ("logit_scale",)
# How many offending keys an error message lists.
_KEYS_IN_MESSAGE = 5


class ClipWeightsError(ValueError):
    """A weights file cannot be read, or does not fit the model it is loaded into."""


# --------------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------------


def is_torchscript_archive(path: PathLike) -> bool:
    """True for a TorchScript zip archive (it holds ``<name>/constants.pkl``); False for anything else,
    including plain ``torch.save`` zips, which hold ``<name>/data.pkl`` but no compiled constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def _read_torchscript_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        return read_torchscript_state_dict(path)
    except (TorchScriptArchiveError, zipfile.BadZipFile, KeyError) as error:
        raise ClipWeightsError(f"{path}: not a readable TorchScript weights archive: {error}") from error


def _read_plain_checkpoint(path: Path) -> object:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # safetensors is a dependency of open_clip

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ClipWeightsError(
            f"{path}: not a plain weights file (torch.load with weights_only=True refused it; "
            f"arbitrary pickled objects are never loaded): {error}") from error


def _strip_prefix_from_all(state_dict: Mapping[str, object], prefix: str) -> dict[str, object]:
    """Removes ``prefix`` from every key that starts with it (DDP adds it to all of them)."""
    return {(key[len(prefix):] if key.startswith(prefix) else key): value for key, value in state_dict.items()}


def _unwrap_checkpoint(checkpoint: object, path: Path) -> dict[str, object]:
    if not isinstance(checkpoint, Mapping):
        raise ClipWeightsError(f"{path}: expected a state dict (a mapping of names to tensors), "
                               f"found {type(checkpoint).__name__}")
    if "model_state_dict" in checkpoint and "fusion_model_state_dict" in checkpoint:
        raise ClipWeightsError(
            f"{path}: this is an official VidPrism training checkpoint, not CLIP weights; it holds only "
            "the visual tower. Load CLIP weights from pretrained_path and import the checkpoint with "
            "vidprism_ds.model.clip_weights.load_official_visual_state.")
    # open_clip training checkpoints: {"epoch", "name", "state_dict", "optimizer", ...}
    if isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    return dict(checkpoint)


def read_clip_state_dict(path: PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """Reads a CLIP weights file into a state dict named like open_clip's ``CLIP``.

    Returns ``(state_dict, format)`` where format is ``"torchscript"`` (OpenAI's archives),
    ``"safetensors"`` or ``"state_dict"`` (OpenAI's or open_clip's pickled layout; they name keys alike).
    """
    path = Path(path)
    if not path.is_file():
        raise ClipWeightsError(f"{path}: CLIP weights file not found (weights are never downloaded; "
                               "give a local file in model.backbone.pretrained_path)")
    if is_torchscript_archive(path):
        state_dict: dict[str, object] = dict(_read_torchscript_state_dict(path))
        weights_format = "torchscript"
    else:
        state_dict = _unwrap_checkpoint(_read_plain_checkpoint(path), path)
        weights_format = "safetensors" if path.suffix == ".safetensors" else "state_dict"

    state_dict = _strip_prefix_from_all(state_dict, _DDP_PREFIX)
    if any(key.startswith(_CUSTOM_TEXT_PREFIX) for key in state_dict):
        # open_clip's CustomTextCLIP layout keeps the text tower under "text."; the plain CLIP class
        # (the one built here, and OpenAI's layout) keeps it at the top level.
        state_dict = _strip_prefix_from_all(state_dict, _CUSTOM_TEXT_PREFIX)
    for key in _OPENAI_METADATA_KEYS:
        state_dict.pop(key, None)

    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ClipWeightsError(f"{path}: entries that are not tensors: {not_tensors[:_KEYS_IN_MESSAGE]}")
    return state_dict, weights_format  # type: ignore[return-value]


def weights_file_digest(path: PathLike) -> str:
    """SHA-256 of a file's bytes (hex): the identity of a weights file in cache keys."""
    return file_sha256(path)


# --------------------------------------------------------------------------------------------------
# Checking and loading
# --------------------------------------------------------------------------------------------------


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def check_state_dict_fits(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raises ``ClipWeightsError`` naming ``source`` and the first bad keys unless ``state_dict`` has
    exactly the module's keys with the module's shapes (dtypes may differ; loading casts)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    mismatched = [f"{key} (file {_shape(value)}, model {_shape(expected[key])})"
                  for key, value in state_dict.items()
                  if key in expected and _shape(value) != _shape(expected[key])]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatches", mismatched)):
        if keys:
            problems.append(f"{len(keys)} {label} (first: {', '.join(keys[:_KEYS_IN_MESSAGE])})")
    if problems:
        raise ClipWeightsError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))


def _resize_visual_positional_embedding(state_dict: dict[str, torch.Tensor], model_with_visual: nn.Module,
                                        key: str, source: str) -> None:
    """Interpolates the patch-grid positional embedding when the weights were trained at another image
    size than the configured one (e.g. 224 px weights, image_size=160). Leaves anything that is not
    a square grid of the model's width alone, so the shape check reports it instead."""
    old = state_dict.get(key)
    target = model_with_visual.visual.positional_embedding
    if old is None or old.ndim != 2 or old.shape == target.shape or old.shape[1] != target.shape[1]:
        return
    old_grid = math.isqrt(old.shape[0] - 1)
    if old_grid * old_grid != old.shape[0] - 1:
        return
    logger.warning("%s: resizing the visual positional embedding from a %dx%d to a %s patch grid "
                   "(weights trained at another image size than model.backbone.image_size)",
                   source, old_grid, old_grid, "x".join(map(str, model_with_visual.visual.grid_size)))
    # open_clip's resize works on full-model keys; bicubic interpolation needs float32 on CPU.
    resized = {"visual.positional_embedding": old.float()}
    resize_pos_embed(resized, model_with_visual)
    state_dict[key] = resized["visual.positional_embedding"].to(old.dtype)


def load_clip_weights(clip_model: nn.Module, path: PathLike) -> str:
    """Loads a CLIP weights file (all towers) into an open_clip ``CLIP``; returns the file's format."""
    state_dict, weights_format = read_clip_state_dict(path)
    source = f"CLIP weights file {path} ({weights_format})"
    _resize_visual_positional_embedding(state_dict, clip_model, "visual.positional_embedding", source)
    logit_scale = state_dict.get("logit_scale")
    if logit_scale is not None and logit_scale.numel() == 1:
        # scalar vs shape-(1,) logit_scale differ between releases; the value is what matters
        state_dict["logit_scale"] = logit_scale.reshape(clip_model.logit_scale.shape)
    check_state_dict_fits(clip_model, state_dict, source)
    clip_model.load_state_dict(state_dict, strict=True)
    logger.info("loaded %s", source)
    return weights_format


def load_official_visual_state(frame_encoder: nn.Module, model_state_dict: Mapping[str, torch.Tensor],
                               source: str = "official VidPrism model_state_dict") -> None:
    """Loads the official VidPrism checkpoint's backbone into a ``FrameEncoder``.

    ``model_state_dict`` is the checkpoint's ``model_state_dict`` (the whole checkpoint dict is accepted
    too): the official ``VideoCLIP`` wrapper saves CLIP's visual tower under ``visual.`` in OpenAI's
    naming, plus ``logit_scale``, with ``module.`` prefixes when it was saved from DDP. The official
    ``VisualTransformer`` parameter names equal open_clip's ``VisionTransformer`` names, so after the
    prefixes are stripped the keys map one to one (checked before loading). The official "joint"
    space-time variant (extra ``time_embedding``) is not VidPrism's backbone and is rejected.
    """
    if "model_state_dict" in model_state_dict and isinstance(model_state_dict["model_state_dict"], Mapping):
        model_state_dict = model_state_dict["model_state_dict"]
    state_dict = _strip_prefix_from_all(model_state_dict, _DDP_PREFIX)
    visual_prefix = "visual."
    visual_state = {key[len(visual_prefix):]: value for key, value in state_dict.items()
                    if key.startswith(visual_prefix)}
    foreign = [key for key in state_dict
               if not key.startswith(visual_prefix) and key not in _OFFICIAL_NON_VISUAL_KEYS]
    if not visual_state:
        raise ClipWeightsError(f"{source}: no 'visual.' keys; expected the official VideoCLIP backbone "
                               f"state (first keys: {list(state_dict)[:_KEYS_IN_MESSAGE]})")
    if foreign:
        raise ClipWeightsError(f"{source}: keys outside the visual tower: {foreign[:_KEYS_IN_MESSAGE]}")
    not_tensors = [key for key, value in visual_state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ClipWeightsError(f"{source}: entries that are not tensors: {not_tensors[:_KEYS_IN_MESSAGE]}")

    _resize_visual_positional_embedding(visual_state, frame_encoder, "positional_embedding", source)
    check_state_dict_fits(frame_encoder.visual, visual_state, source)
    frame_encoder.visual.load_state_dict(visual_state, strict=True)
    logger.info("loaded the visual tower from %s", source)
