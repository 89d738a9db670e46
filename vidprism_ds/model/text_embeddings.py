"""Class text embeddings from the 28-template prompt ensemble (docs/backbone.md#class-text-embeddings), cached on disk.

Each class name is written into 28 prompts (4 prefixes x 7 forms, the official recipe's list), encoded
by CLIP's text tower; each prompt embedding is L2-normalised, the 28 are averaged, and the mean is
normalised again, giving a (classes, D) matrix of unit rows.

Encoding 710 classes x 28 prompts with a ViT-B/16 text tower takes minutes on a CPU, so results are
cached under ``ModelConfig.text_cache_dir``. A cache file is named by a hash of its key material (the
backbone identity from ``vidprism_ds.model.backbone.backbone_identity``, the class names in order and
the templates) and also stores that material, which is compared on load, so a stale or colliding
file is never used. Files are written to a temporary name and renamed into place, so concurrent
writers (several ranks) and interrupted runs never leave a half-written cache entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from vidprism_ds.utils.files import atomic_torch_save

logger = logging.getLogger(__name__)

PROMPT_PREFIXES = ("a photo of", "a video of", "a example of", "a demonstration of")
PROMPT_FORMS = ("{}.", "a person {}.", "a person using {}.", "a person doing {}.", "a person during {}.",
                "a person performing {}.", "a person practicing {}.")
# Prefix-major, the order of the official list: "a photo of {}.", "a photo of a person {}.", ...
PROMPT_TEMPLATES: tuple[str, ...] = tuple(f"{prefix} {form}" for prefix in PROMPT_PREFIXES for form in PROMPT_FORMS)

# Bumped whenever the computation or the file layout changes, so old cache files miss.
CACHE_FORMAT_VERSION = 1
DEFAULT_BATCH_SIZE = 256

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


def class_prompts(class_name: str) -> list[str]:
    """The 28 prompts for one class, in template order."""
    return [template.format(class_name) for template in PROMPT_TEMPLATES]


def _sha256_of_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode("utf-8")).hexdigest()


def labels_digest(class_names: Sequence[str]) -> str:
    """SHA-256 of the class names in order (a reordered list is another label space)."""
    return _sha256_of_json(list(class_names))


def _cache_key_material(backbone_key: str, class_names: Sequence[str]) -> dict[str, object]:
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "backbone_key": backbone_key,
        "labels_sha256": labels_digest(class_names),
        "class_names": list(class_names),
        "templates": list(PROMPT_TEMPLATES),
    }


def cache_file_path(cache_dir: Union[str, os.PathLike], backbone_key: str, class_names: Sequence[str]) -> Path:
    """Where the embeddings for this backbone and label list are cached."""
    material = _cache_key_material(backbone_key, class_names)
    return Path(cache_dir) / f"text_embeddings_{_sha256_of_json(material)[:32]}.pt"


def _text_embed_dim(clip_model: nn.Module) -> Optional[int]:
    projection = getattr(clip_model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[1])
    if isinstance(projection, nn.Linear):
        return int(projection.out_features)
    return None


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Evaluation mode for the duration, then every submodule's own previous mode back (a frozen
    visual tower shared with the FrameEncoder stays in eval even when the CLIP model was training)."""
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, was_training in previous:
            module.training = was_training


def compute_class_text_embeddings(clip_model: nn.Module, tokenizer: Tokenizer, class_names: Sequence[str],
                                  batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """(C, D) float32 CPU tensor of unit rows: the prompt-ensemble embedding of each class."""
    if not class_names:
        raise ValueError("class_text_embeddings needs at least one class name")
    # template-major: prompt index = template * C + class
    prompts = [template.format(name) for template in PROMPT_TEMPLATES for name in class_names]
    device = next(clip_model.parameters()).device
    chunks = []
    with torch.no_grad(), _eval_mode(clip_model):
        for start in range(0, len(prompts), batch_size):
            tokens_nl = tokenizer(prompts[start:start + batch_size]).to(device)
            chunks.append(clip_model.encode_text(tokens_nl).float())
    per_prompt_nd = torch.cat(chunks)
    per_template_tcd = F.normalize(per_prompt_nd.view(len(PROMPT_TEMPLATES), len(class_names), -1), dim=-1)
    return F.normalize(per_template_tcd.mean(dim=0), dim=-1).cpu()


def _read_cache(path: Path, material: dict[str, object], num_classes: int,
                embed_dim: Optional[int]) -> Optional[torch.Tensor]:
    """The cached embeddings if ``path`` holds a valid entry for exactly ``material``, else None."""
    # Entries are torch.save zip archives; anything else (a truncated or foreign file) is not parsed
    # at all, so the unpickler only ever sees complete archives.
    if not zipfile.is_zipfile(path):
        logger.warning("text embedding cache %s is unreadable (not a complete torch.save archive); "
                       "recomputing", path)
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        logger.warning("text embedding cache %s is unreadable (%s); recomputing", path, error)
        return None
    if not isinstance(entry, dict) or entry.get("key") != material:
        logger.warning("text embedding cache %s was written for other key material; recomputing", path)
        return None
    embeddings_cd = entry.get("embeddings_cd")
    well_formed = (isinstance(embeddings_cd, torch.Tensor) and embeddings_cd.ndim == 2
                   and embeddings_cd.shape[0] == num_classes
                   and (embed_dim is None or embeddings_cd.shape[1] == embed_dim)
                   and bool(torch.isfinite(embeddings_cd).all()))
    if not well_formed:
        logger.warning("text embedding cache %s holds a malformed tensor; recomputing", path)
        return None
    return embeddings_cd.float()


def class_text_embeddings(clip_model: nn.Module, tokenizer: Tokenizer, class_names: Sequence[str],
                          cache_dir: Optional[Union[str, os.PathLike]], backbone_key: str,
                          batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
    """(C, D) unit-norm class text embeddings, read from the cache or computed and cached.

    ``backbone_key`` must identify the text tower's weights (use ``backbone_identity``); ``cache_dir``
    None disables caching. Logs "cache hit" / "cache miss" at INFO level.
    """
    class_names = list(class_names)
    if cache_dir is None:
        return compute_class_text_embeddings(clip_model, tokenizer, class_names, batch_size)

    material = _cache_key_material(backbone_key, class_names)
    path = cache_file_path(cache_dir, backbone_key, class_names)
    if path.is_file():
        cached_cd = _read_cache(path, material, len(class_names), _text_embed_dim(clip_model))
        if cached_cd is not None:
            logger.info("text embeddings: cache hit %s (%d classes, backbone %s)", path, len(class_names), backbone_key)
            return cached_cd

    logger.info("text embeddings: cache miss %s; encoding %d classes x %d templates (backbone %s)",
                path, len(class_names), len(PROMPT_TEMPLATES), backbone_key)
    embeddings_cd = compute_class_text_embeddings(clip_model, tokenizer, class_names, batch_size)
    atomic_torch_save({"key": material, "embeddings_cd": embeddings_cd}, path)
    return embeddings_cd


__all__ = [
    "PROMPT_FORMS", "PROMPT_PREFIXES", "PROMPT_TEMPLATES", "cache_file_path", "class_prompts",
    "class_text_embeddings", "compute_class_text_embeddings", "labels_digest",
]
