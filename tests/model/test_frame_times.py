"""Frame timestamps into the head: the encoding's features, and what the heads do with and without times."""

import math

import pytest
import torch

from vidprism_ds.config import load_config
from vidprism_ds.config.schema import ConfigError, HeadConfig, LossWeights
from vidprism_ds.model.frame_times import FrameTimeEncoding, geometric_periods, neighbour_gaps
from vidprism_ds.model.head import VidPrismHead
from vidprism_ds.model.homogeneous_head import HomogeneousHead
from vidprism_ds.model.losses import combine_losses

DIM, CLASSES, FRAMES = 32, 5, 16
SOURCE_GAP_S = 1.0 / 30.0
BURST_START_S = 2.6  # 0.2 s after a base frame, 0.37 s before the next


def _multirate_times(batch: int = 2) -> torch.Tensor:
    """(B, 16): 8 base frames 0.8 s apart with a burst of 8 consecutive 30 fps frames between two of them."""
    base = torch.arange(8) * 0.8
    burst = BURST_START_S + torch.arange(8) * SOURCE_GAP_S
    return torch.cat([base, burst]).sort().values.expand(batch, -1).clone()


def _in_burst(times_t: torch.Tensor) -> torch.Tensor:
    return (times_t >= BURST_START_S) & (times_t < BURST_START_S + 7.5 * SOURCE_GAP_S)


def _head(cls=VidPrismHead, **kw):
    torch.manual_seed(0)
    return cls(DIM, CLASSES, HeadConfig(**kw), max_frames=FRAMES)


def test_periods_span_the_configured_range_geometrically():
    periods = geometric_periods(4, 0.05, 50.0)
    assert periods[0] == pytest.approx(0.05) and periods[-1] == pytest.approx(50.0)
    assert periods[1] / periods[0] == pytest.approx(periods[3] / periods[2])
    assert geometric_periods(1, 0.1, 10.0) == [0.1]


def test_neighbour_gaps_tell_burst_frames_from_base_frames():
    times_bt = _multirate_times(1)
    previous_bt, following_bt = neighbour_gaps(times_bt)
    nearest_bt = torch.minimum(previous_bt, following_bt)[0]
    in_burst = _in_burst(times_bt[0])
    # every burst frame has a consecutive source frame beside it, even the first one (after a base frame)
    torch.testing.assert_close(nearest_bt[in_burst], torch.full((8,), SOURCE_GAP_S))
    assert (nearest_bt[~in_burst] > 0.1).all()
    # the clip's edges take the gap on their other side
    assert previous_bt[0, 0] == following_bt[0, 0] and following_bt[0, -1] == previous_bt[0, -1]
    single_previous, single_following = neighbour_gaps(torch.tensor([[3.0]]))
    assert single_previous.item() == 0.0 and single_following.item() == 0.0


def test_features_are_relative_to_the_clip_and_see_a_changed_gap():
    encoding = FrameTimeEncoding(DIM, num_periods=8, min_period_s=0.05, max_period_s=64.0)
    times_bt = _multirate_times(1)
    features_btf = encoding.features(times_bt)
    assert features_btf.shape == (1, FRAMES, 6 * 8 + 1) == (1, FRAMES, encoding.num_features)
    assert features_btf[0, 0, 0] == 0.0 and features_btf[0, -1, 0] == 1.0  # relative position in the span
    # a clip taken 100 s later in its video is the same clip to the head (up to the fp32 rounding of the
    # input times, 8e-6 s at 100 s, times the fastest angular frequency 2 pi / 0.05 s)
    torch.testing.assert_close(encoding.features(times_bt + 100.0), features_btf, atol=2e-3, rtol=0)
    # doubling the burst's frame gap (15 fps) changes the burst frames' features
    slower = times_bt.clone()
    in_burst = _in_burst(times_bt[0])
    slower[0, in_burst] = BURST_START_S + (times_bt[0, in_burst] - BURST_START_S) * 2
    assert (encoding.features(slower) - features_btf).abs().amax() > 0.1


def test_sinusoids_are_the_documented_ones():
    encoding = FrameTimeEncoding(DIM, num_periods=2, min_period_s=1.0, max_period_s=4.0)
    times_bt = torch.tensor([[10.0, 10.5, 11.5]])
    features = encoding.features(times_bt)[0]
    relative, previous, following = [0.0, 0.5, 1.5], [0.5, 0.5, 1.0], [0.5, 1.0, 1.0]
    for t in range(3):
        angles = [q * 2 * math.pi / p for q in (relative[t], previous[t], following[t]) for p in (1.0, 4.0)]
        expected = [relative[t] / 1.5] + [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
        torch.testing.assert_close(features[t], torch.tensor(expected), atol=1e-5, rtol=0)


def test_without_the_encoding_no_parameters_and_times_are_ignored():
    plain = _head().eval()
    assert not any("frame_time" in name for name in plain.state_dict())
    x_btd = torch.randn(2, FRAMES, DIM)
    torch.testing.assert_close(plain(x_btd, frame_times=_multirate_times()).logits, plain(x_btd).logits,
                               atol=0, rtol=0)


@pytest.mark.parametrize("cls", [VidPrismHead, HomogeneousHead])
def test_the_encoding_adds_two_zero_tensors_and_changes_nothing_else(cls):
    plain, encoded = _head(cls).eval(), _head(cls, frame_time_encoding=True).eval()
    plain_state, encoded_state = plain.state_dict(), encoded.state_dict()
    assert set(encoded_state) - set(plain_state) == {"frame_time_encoding.weight", "frame_time_encoding.bias"}
    for name, tensor in plain_state.items():  # the same seed gives the same other weights
        assert torch.equal(encoded_state[name], tensor), name
    assert encoded_state["frame_time_encoding.weight"].shape == (DIM, 6 * 8 + 1)
    x_btd = torch.randn(2, FRAMES, DIM)
    reference = plain(x_btd).logits
    torch.testing.assert_close(encoded(x_btd).logits, reference, atol=0, rtol=0)
    # the zero projection: times change nothing yet
    torch.testing.assert_close(encoded(x_btd, frame_times=_multirate_times()).logits, reference)


@pytest.mark.parametrize("cls", [VidPrismHead, HomogeneousHead])
def test_gradient_reaches_the_projection_and_one_step_makes_the_logits_depend_on_a_gap(cls):
    head = _head(cls, frame_time_encoding=True, expert_pos_embed=False).train()
    x_btd, times_bt = torch.randn(2, FRAMES, DIM), _multirate_times()
    labels = torch.tensor([0, 3])
    losses = combine_losses(LossWeights(), head(x_btd, frame_times=times_bt), labels, torch.randn(CLASSES, DIM))
    losses.total.backward()
    encoding = head.frame_time_encoding
    assert encoding.weight.grad.abs().amax() > 0 and encoding.bias.grad.abs().amax() > 0
    with torch.no_grad():
        for param in head.parameters():
            if param.grad is not None:
                param -= 1.0 * param.grad
    head.eval()
    closer = times_bt.clone()
    closer[:, -1] = closer[:, -2] + 0.05  # only the last gap changes: 0.8 s -> 0.05 s
    changed = head(x_btd, frame_times=closer).logits - head(x_btd, frame_times=times_bt).logits
    assert changed.abs().amax() > 1e-5


def test_times_of_another_shape_are_refused():
    head = _head(frame_time_encoding=True)
    with pytest.raises(ValueError, match="one time per frame"):
        head(torch.randn(2, FRAMES, DIM), frame_times=torch.zeros(2, FRAMES - 1))


@pytest.mark.parametrize("override, key", [
    ("model.head.frame_time_periods=0", "model.head.frame_time_periods"),
    ("model.head.frame_time_min_period_s=0", "model.head.frame_time_min_period_s"),
    ("model.head.frame_time_max_period_s=0.01", "model.head.frame_time_max_period_s"),
])
def test_bad_encoding_settings_are_refused_with_their_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}"):
        load_config(None, ["model.head.frame_time_encoding=true", override])


def test_the_official_mode_refuses_the_encoding():
    with pytest.raises(ConfigError, match=r"^model\.head\.frame_time_encoding"):
        load_config(None, ["model.head.mode=official", "model.head.frame_time_encoding=true"])
    assert load_config(None, ["model.head.frame_time_encoding=true"]).model.head.frame_time_encoding is True
