"""Fine-tuning from a Kinetics-710 checkpoint: keep the classifier rows of the target dataset's classes.

Kinetics-710 is the union of the K400, K600 and K700 classes, so a K710 model already has a trained
classifier row for every class of each of them. ``train.init_class_map = "k400"`` (likewise k600, k700)
turns the checkpoint's 710-way classifier into a 400-way one by taking, for K400 class i, row
``k710_index_of_k400[i]``, instead of starting a new classifier from random weights (which is what
the official code does when the class count changes). The index maps are positional
(``vidprism_ds.data.presets.load_k710_index``): the lists spell some classes differently, so rows are
never matched by name.

Only the classifier (``classifier.weight`` (C, D) and ``classifier.bias`` (C,), under any prefix) has a
class axis; the projection head maps into the text-embedding space and the class text embeddings
are recomputed from the target label list, so nothing else changes.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from vidprism_ds.data.presets import FRESH_CLASSIFIER, get_preset, load_k710_index

CLASSIFIER_PARAMS = ("classifier.weight", "classifier.bias")


def is_classifier_param(key: str) -> bool:
    return any(key == name or key.endswith("." + name) for name in CLASSIFIER_PARAMS)


def slice_classifier(state_dict: Mapping[str, torch.Tensor], rows: Sequence[int],
                     source_classes: int) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` whose classifier weight and bias keep only ``rows``, in that order.

    Every classifier tensor must have ``source_classes`` rows: a checkpoint that was already sliced,
    or trained on other classes, is refused rather than sliced wrongly.
    """
    index = torch.as_tensor(list(rows), dtype=torch.long)
    sliced = dict(state_dict)
    found = [key for key in state_dict if is_classifier_param(key)]
    if not found:
        raise ValueError(f"no classifier to slice: none of the keys ends in {' or '.join(CLASSIFIER_PARAMS)}")
    for key in found:
        tensor = state_dict[key]
        if tensor.shape[0] != source_classes:
            raise ValueError(f"{key}: has {tensor.shape[0]} classes, expected {source_classes} to slice from "
                             f"(set train.init_class_map to '' if the checkpoint already has the target classes)")
        sliced[key] = tensor.index_select(0, index.to(tensor.device)).clone()
    return sliced


def drop_classifier(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of ``state_dict`` without the classifier weight and bias."""
    kept = {key: value for key, value in state_dict.items() if not is_classifier_param(key)}
    if len(kept) == len(state_dict):
        raise ValueError(f"no classifier to drop: none of the keys ends in {' or '.join(CLASSIFIER_PARAMS)}")
    return kept


def apply_init_class_map(state_dict: Mapping[str, torch.Tensor], init_class_map: str) -> dict[str, torch.Tensor]:
    """``train.init_class_map`` applied to a checkpoint's state dict: ``""`` leaves it as it is;
    ``"k400"``/``"k600"``/``"k700"`` slices the 710-way classifier to that dataset's classes;
    ``"fresh"`` drops the classifier (the model keeps its newly initialised one)."""
    if not init_class_map:
        return dict(state_dict)
    if init_class_map == FRESH_CLASSIFIER:
        return drop_classifier(state_dict)
    rows = load_k710_index(init_class_map)
    return slice_classifier(state_dict, rows, source_classes=get_preset("k710").num_classes)


def load_init_weights(model: nn.Module, init_from: str, init_class_map: str) -> None:
    """``train.init_from`` (a state dict file) into ``model``, its classifier mapped by
    ``train.init_class_map`` (``apply_init_class_map``); raises when anything but a dropped classifier is
    missing or left over."""
    state = torch.load(init_from, map_location="cpu", weights_only=True)
    state = apply_init_class_map(state, init_class_map)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if init_class_map == FRESH_CLASSIFIER:  # the new classifier is meant to be missing
        missing = [key for key in missing if not is_classifier_param(key)]
    if missing or unexpected:
        raise RuntimeError(f"train.init_from {init_from}: does not match the model (missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]})")
