"""Class text embeddings: the 28 templates, the ensemble maths, and the on-disk cache."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from vidprism_ds.config.schema import BackboneConfig
from vidprism_ds.model.backbone import backbone_identity, build_clip, build_frame_encoder, get_tokenizer
from vidprism_ds.model.text_embeddings import (
    PROMPT_TEMPLATES,
    cache_file_path,
    class_prompts,
    class_text_embeddings,
    compute_class_text_embeddings,
)

CLASSES = ["abseiling", "air drumming", "playing guitar", "sneezing"]
CFG = BackboneConfig(arch="tiny", image_size=64)

# The official recipe's list (modules/text_prompt.py, text_prompt_ensemble), written out.
OFFICIAL_TEMPLATES = [
    "a photo of {}.", "a photo of a person {}.", "a photo of a person using {}.", "a photo of a person doing {}.",
    "a photo of a person during {}.", "a photo of a person performing {}.", "a photo of a person practicing {}.",
    "a video of {}.", "a video of a person {}.", "a video of a person using {}.", "a video of a person doing {}.",
    "a video of a person during {}.", "a video of a person performing {}.", "a video of a person practicing {}.",
    "a example of {}.", "a example of a person {}.", "a example of a person using {}.",
    "a example of a person doing {}.", "a example of a person during {}.", "a example of a person performing {}.",
    "a example of a person practicing {}.",
    "a demonstration of {}.", "a demonstration of a person {}.", "a demonstration of a person using {}.",
    "a demonstration of a person doing {}.", "a demonstration of a person during {}.",
    "a demonstration of a person performing {}.", "a demonstration of a person practicing {}.",
]


@pytest.fixture(scope="module")
def clip_model():
    return build_clip(CFG, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return get_tokenizer(CFG.arch)


@pytest.fixture
def encode_calls(clip_model, monkeypatch):
    """Counts how many prompts go through the text encoder."""
    counter = {"prompts": 0}
    original = clip_model.encode_text

    def counting_encode_text(tokens, *args, **kwargs):
        counter["prompts"] += tokens.shape[0]
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(clip_model, "encode_text", counting_encode_text)
    return counter


def test_the_28_templates_exactly():
    assert list(PROMPT_TEMPLATES) == OFFICIAL_TEMPLATES
    prompts = class_prompts("abseiling")
    assert len(prompts) == 28 and len(set(prompts)) == 28
    assert prompts[0] == "a photo of abseiling."
    assert prompts[-1] == "a demonstration of a person practicing abseiling."


def test_embeddings_are_the_normalised_mean_of_normalised_template_embeddings(clip_model, tokenizer):
    embeddings_cd = compute_class_text_embeddings(clip_model, tokenizer, CLASSES, batch_size=16)
    assert embeddings_cd.shape == (len(CLASSES), 64) and embeddings_cd.dtype == torch.float32
    torch.testing.assert_close(embeddings_cd.norm(dim=-1), torch.ones(len(CLASSES)))

    # the official recipe's loop: per template, encode all classes and normalise; then average
    clip_model.eval()
    with torch.no_grad():
        per_template = [F.normalize(clip_model.encode_text(tokenizer([t.format(c) for c in CLASSES])), dim=-1)
                        for t in OFFICIAL_TEMPLATES]
    expected = F.normalize(torch.stack(per_template).mean(0), dim=-1)
    torch.testing.assert_close(embeddings_cd, expected, rtol=1e-5, atol=1e-6)
    # distinct classes get distinct embeddings
    assert (embeddings_cd @ embeddings_cd.T - torch.eye(len(CLASSES))).abs().max() < 0.999


def test_batch_size_does_not_change_the_result(clip_model, tokenizer):
    # 56 prompts in batches of 17: the last batch is partial and crosses a template boundary
    small = compute_class_text_embeddings(clip_model, tokenizer, CLASSES[:2], batch_size=17)
    large = compute_class_text_embeddings(clip_model, tokenizer, CLASSES[:2], batch_size=1000)
    torch.testing.assert_close(small, large, rtol=1e-5, atol=1e-6)


def test_modes_are_restored_after_encoding(tokenizer):
    encoder, clip_model = build_frame_encoder(BackboneConfig(arch="tiny", image_size=64, freeze="all"))
    clip_model.train()
    encoder.train()  # the frozen visual tower it shares stays in eval
    compute_class_text_embeddings(clip_model, tokenizer, CLASSES[:1])
    assert clip_model.training and clip_model.transformer.training
    assert not clip_model.visual.training


def test_cache_miss_then_hit(clip_model, tokenizer, encode_calls, tmp_path, caplog):
    key = backbone_identity(CFG, seed=0)
    with caplog.at_level(logging.INFO, logger="vidprism_ds.model.text_embeddings"):
        first = class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    assert encode_calls["prompts"] == 28 * len(CLASSES)
    assert "cache miss" in caplog.text
    path = cache_file_path(tmp_path, key, CLASSES)
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind

    # the file carries its key material
    entry = torch.load(path, weights_only=True)
    assert entry["key"]["backbone_key"] == key and entry["key"]["class_names"] == CLASSES
    assert entry["key"]["templates"] == OFFICIAL_TEMPLATES

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vidprism_ds.model.text_embeddings"):
        second = class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    assert encode_calls["prompts"] == 28 * len(CLASSES)  # the text encoder did not run again
    assert "cache hit" in caplog.text
    assert torch.equal(first, second)


@pytest.mark.parametrize("change", ["reordered", "extra class", "backbone"])
def test_changed_labels_or_backbone_miss(clip_model, tokenizer, encode_calls, tmp_path, change):
    key = backbone_identity(CFG, seed=0)
    class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    calls_after_first = encode_calls["prompts"]
    names, other_key = list(CLASSES), key
    if change == "reordered":
        names = names[::-1]
    elif change == "extra class":
        names.append("yawning")
    else:
        other_key = backbone_identity(CFG, seed=1)
    assert cache_file_path(tmp_path, other_key, names) != cache_file_path(tmp_path, key, CLASSES)
    result = class_text_embeddings(clip_model, tokenizer, names, tmp_path, other_key)
    assert encode_calls["prompts"] == calls_after_first + 28 * len(names)
    assert result.shape == (len(names), 64)
    if change == "reordered":
        first = class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
        torch.testing.assert_close(result, first.flip(0))


def test_corrupt_or_foreign_cache_files_are_recomputed(clip_model, tokenizer, encode_calls, tmp_path, caplog):
    key = backbone_identity(CFG, seed=0)
    path = cache_file_path(tmp_path, key, CLASSES)
    path.write_bytes(b"truncated")
    with caplog.at_level(logging.WARNING):
        good = class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    assert "unreadable" in caplog.text and encode_calls["prompts"] == 28 * len(CLASSES)

    # a file at the right name whose stored key material differs (e.g. a hash collision) is not used
    torch.save({"key": {"backbone_key": "something else"}, "embeddings_cd": torch.zeros(len(CLASSES), 64)}, path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    assert "other key material" in caplog.text and encode_calls["prompts"] == 2 * 28 * len(CLASSES)
    assert torch.equal(again, good)
    # and the rewritten file is a valid hit
    class_text_embeddings(clip_model, tokenizer, CLASSES, tmp_path, key)
    assert encode_calls["prompts"] == 2 * 28 * len(CLASSES)


def test_no_cache_dir_computes_every_time(clip_model, tokenizer, encode_calls):
    class_text_embeddings(clip_model, tokenizer, CLASSES, None, "unused")
    class_text_embeddings(clip_model, tokenizer, CLASSES, None, "unused")
    assert encode_calls["prompts"] == 2 * 28 * len(CLASSES)


def test_empty_label_list_is_an_error(clip_model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="at least one class"):
        class_text_embeddings(clip_model, tokenizer, [], tmp_path, "key")
