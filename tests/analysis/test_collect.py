import numpy as np
import torch

from vidprism_ds.analysis.collect import collect, expert_names, sampler_rates
from vidprism_ds.config.schema import BackboneConfig, HeadConfig, ModelConfig
from vidprism_ds.data.transforms import normalise
from vidprism_ds.model.video_model import build_video_model

SIZE, FRAMES, CLASSES = 32, 8, 3


def _model(burst_frames=0, **kw):
    return build_video_model(ModelConfig(backbone=BackboneConfig(image_size=SIZE), **kw), CLASSES, FRAMES,
                             burst_frames=burst_frames).model


def _eval_batch(valid):
    batch = len(valid)
    frames = torch.randint(0, 256, (batch, 2, FRAMES, 3, SIZE, SIZE), dtype=torch.uint8)  # as the loaders give them
    return {"frames": frames, "labels": torch.arange(batch) % CLASSES,
            "valid": torch.tensor(valid), "index": torch.arange(batch)}


def test_collect_flattens_views_drops_padding_and_matches_the_model():
    model = _model()
    batches = [_eval_batch([True, True, False]), _eval_batch([True, False, False])]
    spec = collect(model, batches)
    # 3 valid samples x 2 views
    assert spec.labels_n.tolist() == [0, 0, 1, 1, 0, 0]
    assert spec.expert_weights_ne.shape == (6, 4) and spec.expert_means_ned.shape[:2] == (6, 4)
    assert [k.shape for k in spec.keep_indices] == [(6, 4), (6, 2), (6, 1), (6, 1)]
    assert spec.num_frames == FRAMES and spec.burst_frames == 0 and model.training  # mode restored
    with torch.no_grad():
        direct = model.eval()(normalise(batches[0]["frames"][:2].flatten(0, 1)))
    np.testing.assert_allclose(spec.expert_weights_ne[:4], direct.expert_weights.numpy(), rtol=1e-5, atol=1e-6)
    assert spec.predictions_n[:4].tolist() == direct.logits.argmax(-1).tolist()


def test_collect_stops_at_max_clips_and_handles_training_batches():
    batches = [{"frames": torch.zeros(4, FRAMES, 3, SIZE, SIZE, dtype=torch.uint8),
                "labels": torch.zeros(4, dtype=torch.long)}] * 3
    spec = collect(_model(variant="meanpool"), batches, max_clips=5)
    assert len(spec.labels_n) == 5 and spec.keep_indices == [] and spec.num_experts == 1


def test_names_and_sampler_rates_per_head_kind():
    vidprism = _model().head
    assert expert_names(vidprism, 4) == ["rate 2", "rate 4", "rate 8", "rate 16"]
    assert sampler_rates(vidprism) == [2, 4, 8, 16]
    # strided pooling keeps no frame: its window starts are not keep positions
    assert sampler_rates(_model(head=HeadConfig(use_sampler=False)).head) is None
    homogeneous = _model(variant="homogeneous").head
    assert expert_names(homogeneous, 4) == [f"expert {e}" for e in range(4)] and sampler_rates(homogeneous) is None
    assert expert_names(_model(variant="meanpool").head, 1) == ["mean pool"]


def test_collect_passes_each_views_frame_times_to_the_model():
    model = _model(head=HeadConfig(frame_time_encoding=True))
    for name, param in model.named_parameters():
        if "frame_time_encoding" in name:  # zero at init: make the times matter
            torch.nn.init.normal_(param, std=0.5)
    batch = _eval_batch([True, False])
    times = torch.rand(2, 2, FRAMES).sort(dim=-1).values * 4.0  # (B, V, T) seconds
    batch["frame_times"] = times
    spec = collect(model, [batch])
    with torch.no_grad():
        clips = normalise(batch["frames"][:1].flatten(0, 1))
        with_times = model.eval()(clips, frame_times=times[:1].flatten(0, 1))
        without = model(clips)
    np.testing.assert_allclose(spec.expert_weights_ne, with_times.expert_weights.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(spec.expert_weights_ne, without.expert_weights.numpy(), atol=1e-4)


def test_collect_records_a_multirate_clips_burst_part():
    model = _model(burst_frames=4, head=HeadConfig(frame_time_encoding=True))
    batch = _eval_batch([True, True])
    batch["frame_times"] = torch.cat([torch.arange(4) * 1.0, 1.5 + torch.arange(4) / 24]).expand(2, 2, -1)
    spec = collect(model, [batch])
    assert spec.burst_frames == 4
    # the fast groups read every burst frame (positions 4..7), then the changes into 5..7, after their segment windows
    assert [k.shape[1] for k in spec.keep_indices] == [2 + 7, 1 + 7, 1, 1]
    assert (spec.keep_indices[0][:, 2:] == [4, 5, 6, 7, 5, 6, 7]).all()
