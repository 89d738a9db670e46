"""Import checkpoints of the official VidPrism code.

An official checkpoint is a dict with ``epoch``, ``model_state_dict`` (CLIP, visual tower under
``visual.``), ``fusion_model_state_dict`` (the temporal head) and ``optimizer_state_dict``. Files are
read with ``torch.load(..., weights_only=True)``: a downloaded checkpoint never runs code.

    head = load_official_head("vidprism_k400.pt")          # official mode, eval-ready
    out = head(x_btd)                                        # out.logits, out.expert_weights, ...

    python -m vidprism_ds.compat.official IN.pt --out OUT.pt
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from vidprism_ds.config.schema import ConfigError, HeadConfig
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.utils.files import atomic_torch_save

# official prefix -> ours; longest first so nested names win
_PREFIX_MAP = (
    ("pooling_layers.", "samplers."),
    ("dynamic_interaction.", "fusion."),
    ("mote.experts.", "experts."),
    ("mote.readout_gate.", "readout."),
    ("projection_head.", "projection."),
    ("head.", "classifier."),
)
OFFICIAL_DEFAULT_RATES = (2, 4, 8, 16)
_HEAD_FIELDS = {f.name for f in fields(HeadConfig)}


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DistributedDataParallel's ``module.`` prefix."""
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _head_state(path_or_state: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    obj = read_checkpoint(path_or_state) if isinstance(path_or_state, (str, Path)) else path_or_state
    if "fusion_model_state_dict" in obj:
        obj = obj["fusion_model_state_dict"]
    state = _strip_wrappers(obj)
    if "head.weight" not in state or not any(k.startswith("pooling_layers.") for k in state):
        raise ValueError("not an official VidPrism head state dict: expected head.weight and pooling_layers.* keys")
    return state


def infer_head_config(state: Mapping[str, torch.Tensor], **overrides: Any) -> tuple[int, int, HeadConfig]:
    """(D, classes, HeadConfig) from the official head state dict; ``overrides`` set HeadConfig fields."""
    unknown = set(overrides) - _HEAD_FIELDS
    if unknown:
        raise ConfigError(f"load_official_head: unknown override(s) {sorted(unknown)}")
    num_classes, dim = state["head.weight"].shape
    num_experts = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("pooling_layers."))
    rates = list(overrides.pop("sampling_rates", OFFICIAL_DEFAULT_RATES[:num_experts]))
    if len(rates) != num_experts:
        raise ConfigError(f"sampling_rates: the checkpoint has {num_experts} experts; pass sampling_rates= with "
                          f"{num_experts} rates (the official file does not store them)")
    ffn_width = state["mote.experts.0.ffn.0.weight"].shape[0]
    cfg = HeadConfig(mode="official", sampling_rates=rates, expert_ffn_mult=ffn_width // dim)
    cfg = replace(cfg, **overrides)
    return dim, num_classes, cfg


def convert_head_state(state: Mapping[str, torch.Tensor], head: VidPrismHead) -> dict[str, torch.Tensor]:
    """Rename official keys to ours; drop the gate MLPs of same-speed pairs (they never act)."""
    ours = head.state_dict()
    converted = {}
    for key, value in state.items():
        for old, new in _PREFIX_MAP:
            if key.startswith(old):
                new_key = new + key[len(old):]
                break
        else:
            raise ValueError(f"unexpected key in the official head state dict: {key}")
        if new_key.startswith("fusion.score_mlps.") and new_key not in ours:
            continue  # diagonal / same-speed pair: built by the official code, never used
        if new_key.startswith("fusion.slow2fast.") and new_key not in ours:
            continue  # no slow->fast pair with these rates
        converted[new_key] = value
    missing = sorted(set(ours) - set(converted))
    extra = sorted(set(converted) - set(ours))
    if missing or extra:
        raise ValueError(f"official head does not fit the inferred config: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in converted.items():
        if value.shape != ours[key].shape:
            raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} != model shape {tuple(ours[key].shape)}")
    return converted


def load_official_head(path_or_state_dict: str | Path | Mapping[str, Any], **overrides: Any) -> VidPrismHead:
    """Build a ``VidPrismHead`` in official mode from an official checkpoint; returned in eval mode."""
    state = _head_state(path_or_state_dict)
    dim, num_classes, cfg = infer_head_config(state, **overrides)
    head = VidPrismHead(dim, num_classes, cfg)
    head.load_state_dict(convert_head_state(state, head), strict=True)
    return head.eval()


def official_visual_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The CLIP visual tower of an official checkpoint, keys relative to the visual module."""
    state = _strip_wrappers(checkpoint["model_state_dict"])
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ValueError("model_state_dict has no visual.* keys")
    return visual


def convert_checkpoint(in_path: str | Path, out_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Official checkpoint -> this project's inference file (head + CLIP visual state, head config)."""
    checkpoint = read_checkpoint(in_path)
    head = load_official_head(checkpoint, **overrides)
    payload = {
        "format": "vidprism_ds.official_import/1",
        "head_config": asdict(head.cfg),
        "num_classes": head.classifier.out_features,
        "dim": head.classifier.in_features,
        "head_state_dict": head.state_dict(),
        "epoch": checkpoint.get("epoch"),
    }
    if "model_state_dict" in checkpoint:
        payload["visual_state_dict"] = official_visual_state(checkpoint)
    atomic_torch_save(payload, out_path)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidprism_ds.compat.official",
                                     description="Convert an official VidPrism checkpoint to this project's format.")
    parser.add_argument("checkpoint", help="official .pt file (dict with fusion_model_state_dict)")
    parser.add_argument("--out", required=True, help="output .pt file")
    parser.add_argument("--sampling-rates", type=int, nargs="+", default=None,
                        help="rates, when the checkpoint does not use (2, 4, 8, 16)")
    args = parser.parse_args(argv)
    overrides = {"sampling_rates": args.sampling_rates} if args.sampling_rates else {}
    try:
        payload = convert_checkpoint(args.checkpoint, args.out, **overrides)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: D={payload['dim']} classes={payload['num_classes']} "
          f"rates={payload['head_config']['sampling_rates']} visual={'visual_state_dict' in payload}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
