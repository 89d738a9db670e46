import pytest
import torch

from tests.model.reference import reference_fusion
from vidprism_ds.model.fusion import BidirectionalFusion

RATES = [2, 4, 8, 16]


def _streams(batch, num_frames=32, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, -(-num_frames // r), dim, generator=g) for r in RATES]


def _set_gate_bias(fusion, biases):
    """Push each pair's gate towards open (large bias) or shut (negative bias)."""
    with torch.no_grad():
        for key, bias in biases.items():
            fusion.score_mlps[key][2].bias.fill_(bias)


def test_only_cross_speed_pairs_have_gates():
    fusion = BidirectionalFusion(16, RATES)
    # fast = {0, 1}, slow = {2, 3}; official flat index i * 4 + j
    assert sorted(fusion.score_mlps.keys(), key=int) == ["2", "3", "6", "7", "8", "9", "12", "13"]
    assert sorted(fusion.fast2slow_ops.keys()) == ["0->2", "0->3", "1->2", "1->3"]


@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("num_frames", [32, 8, 20])
def test_matches_loop_reference(official, num_frames):
    torch.manual_seed(num_frames)
    fusion = BidirectionalFusion(16, RATES, official=official)
    # a mix of open, shut and borderline gates so both skip rules are exercised
    _set_gate_bias(fusion, {"2": 4.0, "3": -4.0, "6": 0.0, "7": -0.6, "8": 4.0, "9": -4.0, "12": -0.7, "13": 3.0})
    streams = _streams(5, num_frames)
    out = fusion(streams)
    ref = reference_fusion(fusion, streams, official)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


def test_official_last_writer_wins():
    """With every gate open, fast stream 0 receives only the update from the last slow source (3)."""
    torch.manual_seed(0)
    fusion = BidirectionalFusion(16, RATES, official=True)
    _set_gate_bias(fusion, {k: 6.0 for k in fusion.score_mlps.keys()})
    streams = _streams(2)
    out0 = fusion(streams)[0]
    gate = fusion.gates(streams)
    only_from_3 = streams[0] + gate[(3, 0)][:, None, None] * fusion.slow2fast(streams[3], streams[0].shape[1])
    torch.testing.assert_close(out0, only_from_3, atol=1e-5, rtol=1e-5)


def test_default_sums_every_open_source():
    torch.manual_seed(0)
    fusion = BidirectionalFusion(16, RATES, official=False)
    _set_gate_bias(fusion, {k: 6.0 for k in fusion.score_mlps.keys()})
    streams = _streams(2)
    gate = fusion.gates(streams)
    expected = streams[2] + sum(gate[(i, 2)][:, None, None] * fusion.fast2slow_ops[f"{i}->2"](streams[i]) for i in (0, 1))
    torch.testing.assert_close(fusion(streams)[2], expected, atol=1e-5, rtol=1e-5)


def test_fast_to_slow_matches_conv1d():
    torch.manual_seed(0)
    fusion = BidirectionalFusion(16, RATES)
    op = fusion.fast2slow_ops["0->3"]
    x_bld = torch.randn(3, 13, 16)
    expected = op.tconv(x_bld.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(op(x_bld), expected, atol=1e-5, rtol=1e-5)


def test_default_gate_is_per_clip_official_is_per_batch():
    """A clip's fused stream depends on its batch-mates only in official mode."""
    torch.manual_seed(3)
    for official in (False, True):
        fusion = BidirectionalFusion(16, RATES, official=official)
        streams = _streams(6, seed=4)
        # choose a gate bias that sits near the threshold, so batch composition flips the skip
        _set_gate_bias(fusion, {k: -0.85 for k in fusion.score_mlps.keys()})
        with torch.no_grad():
            fusion.score_mlps["12"][0].weight.mul_(20)
        full = fusion(streams)
        alone = [fusion([s[i:i + 1] for s in streams]) for i in range(6)]
        diffs = max((full[j][i] - alone[i][j][0]).abs().max().item() for i in range(6) for j in range(4))
        if official:
            assert diffs > 1e-3, "expected the batch-mean skip to make clips depend on their batch"
        else:
            assert diffs < 1e-5


@pytest.mark.parametrize("official", [False, True])
def test_same_length_streams_keep_their_length_and_the_rate_fusions_parameters(official):
    """The homogeneous + fusion head: full-rate streams, slow/fast by nominal rate, every conv stride 1."""
    torch.manual_seed(0)
    fusion = BidirectionalFusion(16, RATES, official=official, same_length_streams=True)
    rate_fusion = BidirectionalFusion(16, RATES)
    shapes = {n: p.shape for n, p in fusion.named_parameters()}
    assert shapes == {n: p.shape for n, p in rate_fusion.named_parameters()}
    assert all(op.stride == 1 == op.tconv.stride[0] for op in fusion.fast2slow_ops.values())
    _set_gate_bias(fusion, {"2": 4.0, "3": -4.0, "6": 0.0, "7": -0.6, "8": 4.0, "9": -4.0, "12": -0.7, "13": 3.0})
    g = torch.Generator().manual_seed(1)
    streams = [torch.randn(3, 12, 16, generator=g) for _ in RATES]
    out = fusion(streams)
    assert [o.shape for o in out] == [(3, 12, 16)] * 4
    for o, r in zip(out, reference_fusion(fusion, streams, official)):
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)
