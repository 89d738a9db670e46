"""Resume across topologies keeps the optimizer: fp32 masters, Adam moments and the step count saved per
parameter with single-process names (experts by global id) load at another world size, ep_size and
tp_size, and the next optimizer step is the one the saving topology takes."""

import pytest
import torch

from tests.parallel.harness import run_workers
from tests.parallel.optimizer_state_workers import full_tp_weight
from vidprism_ds.parallel.context import ParallelContext
from vidprism_ds.parallel.optimizer_state import (MOMENT_KEYS, OPTIMIZER_DIR,
                                                  load_optimizer_state, read_expert_states, read_shared_states)
from vidprism_ds.train.checkpoint import read_meta, verify_tag

NUM_EXPERTS = 4  # the default head's four rate experts


def _consolidated(ckpt_dir) -> tuple[int, dict]:
    step, states = read_shared_states(ckpt_dir)
    for expert_id in range(NUM_EXPERTS):
        for name, state in read_expert_states(ckpt_dir, expert_id).items():
            states[f"experts.{expert_id}.{name}"] = state
    return step, states


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_world2_ep2_resumes_at_world1_ep1_and_world4_ep2_with_the_same_optimizer(tmp_path):
    saved = run_workers("tests.parallel.optimizer_state_workers:save_at_world2_ep2", 2,
                        output_dir=str(tmp_path / "run"), steps=2)[0]
    tag_dir = tmp_path / "run" / "checkpoints" / "step_00000002"
    meta = read_meta(tag_dir)
    # the consolidated files are part of the tag's verified records: a half-written one is never resumed
    assert any(name.startswith(f"{OPTIMIZER_DIR}/") for name in meta.files)
    assert f"{OPTIMIZER_DIR}/expert_003.pt" in meta.files and verify_tag(tag_dir, meta) is None
    step, saved_states = _consolidated(tag_dir)
    assert step == 2
    assert all(set(state) == {"fp32", *MOMENT_KEYS} for state in saved_states.values())
    # stepped: every parameter the loss reaches has moments (the projection serves only the contrastive
    # loss, which head_loss leaves out)
    unreached = {name for name, state in saved_states.items() if not state["exp_avg_sq"].any()}
    assert unreached and all(name.startswith("projection.") for name in unreached)

    # ZeRO-2 saved; the plain optimizer (ZeRO off) resumes at world 1 and ZeRO-1 at world 4
    one = run_workers("tests.parallel.optimizer_state_workers:resume_and_step", 1, output_dir=str(tmp_path / "run"),
                      ep_size=1, zero_stage=0, probe_dir=str(tmp_path / "probe1"))[0]
    four = run_workers("tests.parallel.optimizer_state_workers:resume_and_step", 4, output_dir=str(tmp_path / "run"),
                       ep_size=2, zero_stage=1, probe_dir=str(tmp_path / "probe4"), timeout=600)[0]
    for resumed, probe in ((one, "probe1"), (four, "probe4")):
        assert resumed["step"] == 2 and resumed["optimizer_restored"]
        restored_step, restored = _consolidated(tmp_path / probe)
        assert restored_step == 2
        assert restored.keys() == saved_states.keys()
        for name, state in saved_states.items():  # copied, not recomputed: bit-exact
            for key, value in state.items():
                assert torch.equal(restored[name][key], value), (probe, name, key)
        # The next step from the same state on the same global batch: only the order of fp32 sums differs
        # (gradient all-reduce over 2 or 4 ranks, or accumulation on one), ~1e-7 relative on the gradient;
        # Adam's update is lr * m / (sqrt(v) + eps) with eps = 1e-4 keeping that far below 1e-5 in the
        # weights (lr 3e-3), while a fresh optimizer's step would differ by ~lr.
        assert _max_diff(resumed["after_next_step"], saved["after_next_step"]) < 1e-5


def _assert_same_states(a_dir, b_dir) -> None:
    a_step, a = _consolidated(a_dir)
    b_step, b = _consolidated(b_dir)
    assert a_step == b_step and a.keys() == b.keys()
    for name, state in a.items():
        assert state.keys() == b[name].keys()
        for key, value in state.items():
            assert torch.equal(b[name][key], value), (name, key)


@pytest.mark.slow
def test_bf16_state_round_trips_through_the_files(tmp_path):
    """DeepSpeed's fragment API under bf16 weights (fp32 masters and moments in ZeRO-2's partitions):
    restored bit for bit, and the next step is the one the saving engine takes."""
    result = run_workers("tests.parallel.optimizer_state_workers:reload_on_one_process", 1,
                         ckpt_dir=str(tmp_path), timeout=600)[0]
    assert result["restored_step"] == 2
    assert result["dtype"] == "torch.bfloat16"
    _assert_same_states(tmp_path / "saved", tmp_path / "restored")
    saving, loading = result["after_next_step"]
    assert _max_diff(saving, loading) == 0.0  # the same process, inputs and state: the same arithmetic


@pytest.mark.slow
def test_tensor_parallel_shards_are_saved_whole_and_load_at_tp1_and_tp2(tmp_path):
    ranks = run_workers("tests.parallel.optimizer_state_workers:save_and_load_tensor_parallel", 2,
                        ckpt_dir=str(tmp_path))
    step, states = read_shared_states(tmp_path)
    assert step == 1 and set(states) == {"weight", "bias"}  # under the single-process name
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(states["weight"][key], torch.cat([r["shard"][key] for r in ranks]))
    whole_weight = torch.cat([r["weight_shard"] for r in ranks])
    assert torch.equal(states["weight"]["fp32"], whole_weight)
    assert not torch.equal(whole_weight, full_tp_weight())  # it stepped
    assert set(ranks[0]["exported"]) == {"weight", "bias"}
    assert torch.equal(ranks[0]["exported"]["weight"], whole_weight)
    for r in ranks:  # TP=2 -> TP=2: each rank gets its own rows back
        assert torch.equal(r["loaded_weight"], r["weight_shard"])
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(r["loaded_state"][key], r["shard"][key])

    # TP=2 -> TP=1: the whole tensors in a single-process model (no collectives on load)
    model = torch.nn.Module()
    model.weight = torch.nn.Parameter(torch.zeros(4, 3))
    model.bias = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    ctx = ParallelContext(world_size=1, rank=0, ep_size=1, ep_rank=0, ep_group=None, expert_data_group=None)
    assert load_optimizer_state(type("Engine", (), {"module": model, "optimizer": optimizer}), ctx, tmp_path) == 1
    assert torch.equal(model.weight.detach(), whole_weight)
    assert torch.equal(optimizer.state[model.weight]["exp_avg_sq"], states["weight"]["exp_avg_sq"])
    assert int(optimizer.state[model.weight]["step"]) == 1


def test_a_checkpoint_without_optimizer_state_restores_nothing(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    ctx = ParallelContext(world_size=1, rank=0, ep_size=1, ep_rank=0, ep_group=None, expert_data_group=None)
    engine = type("Engine", (), {"module": model, "optimizer": optimizer})
    assert load_optimizer_state(engine, ctx, tmp_path) is None and not optimizer.state
