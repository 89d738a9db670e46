"""The burst-token tools behind the issue 29 diagnosis (docs/results.md)."""

import numpy as np
import torch

from vidprism_ds.analysis.burst_tokens import burst_tokens, change_features, constant_fraction, probe_accuracy
from vidprism_ds.config.schema import BackboneConfig, HeadConfig, ModelConfig
from vidprism_ds.model.video_model import build_video_model

SIZE, SEGMENT, BURST, CLASSES = 32, 8, 8, 3


def test_the_probe_separates_separable_classes_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    features = rng.normal(size=(200, 20))
    features[:, 3] += 2.0 * labels  # one informative channel
    assert probe_accuracy(features, labels) > 0.8
    assert abs(probe_accuracy(features, rng.permutation(labels)) - 0.5) < 0.15


def test_change_features_and_constant_sequences():
    tokens = np.zeros((2, 4, 3))
    tokens[0] = 1.0  # constant
    tokens[1, ::2] = 1.0  # alternating
    np.testing.assert_allclose(change_features(tokens), [[0, 0, 0], [1, 1, 1]])
    tokens[1, 1::2] = -1.0
    assert constant_fraction(tokens, np.array([0, 1]), [0, 1]) == {0: 1.0, 1: 0.0}


def test_burst_tokens_are_what_the_fast_experts_read():
    model = build_video_model(ModelConfig(backbone=BackboneConfig(image_size=SIZE),
                                          head=HeadConfig(frame_time_encoding=True)),
                              CLASSES, SEGMENT + BURST, burst_frames=BURST).model
    frames = torch.randint(0, 256, (3, 1, SEGMENT + BURST, 3, SIZE, SIZE), dtype=torch.uint8)
    times = torch.cat([torch.arange(SEGMENT) * 0.5, 1.0 + torch.arange(BURST) / 25]).expand(3, 1, -1)
    batch = {"frames": frames, "labels": torch.tensor([0, 1, 2]), "valid": torch.tensor([True, True, False]),
             "index": torch.arange(3), "frame_times": times}
    tokens = burst_tokens(model, [batch])
    assert tokens.labels_n.tolist() == [0, 1] and tokens.rates == [2, 4]
    assert tokens.frames_nfd.shape == (2, BURST, 64)
    # every burst frame, then each change, is a token of each fast group (the time encoding starts at zero)
    frames = tokens.frames_nfd
    for kept, group_tokens, out in zip(tokens.kept, tokens.tokens, tokens.expert_out):
        assert (kept == np.r_[np.arange(BURST), np.arange(1, BURST)]).all()
        np.testing.assert_allclose(group_tokens, np.concatenate([frames, frames[:, 1:] - frames[:, :-1]], axis=1),
                                   rtol=1e-5, atol=1e-5)
        assert out.shape == (2, 2 * BURST - 1, 64)
    assert not hasattr(model.head, "__dict__") or "_run_experts" not in model.head.__dict__


def test_the_clip_check_wants_16_consecutive_burst_frames_after_a_segment_part_in_time_order():
    from vidprism_ds.analysis.burst_checks import _well_formed

    times = torch.cat([torch.arange(16) * 0.3, 2.0 + torch.arange(16) / 25])
    assert _well_formed(times)
    skipped = times.clone()
    skipped[20:] += 1 / 25  # a burst frame left out
    unsorted = times.clone()
    unsorted[[3, 4]] = unsorted[[4, 3]]
    assert not _well_formed(skipped) and not _well_formed(unsorted)
