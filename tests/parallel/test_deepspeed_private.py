"""The DeepSpeed internals vidprism_ds relies on (vidprism_ds/parallel/deepspeed_private.py) are still there.

Each check fails with a message naming the DeepSpeed function or attribute that changed, so that an
upgrade past the pin in requirements.txt says what to adapt instead of failing somewhere in training.
"""

import inspect
import re
from pathlib import Path

import pytest
from deepspeed.moe.layer import MoE
from deepspeed.moe.utils import is_moe_param, split_params_into_different_moe_groups_for_optimizer
from deepspeed.runtime.engine import DeepSpeedEngine
from deepspeed.utils import groups
from torch import nn

from tests.parallel.harness import run_workers
from vidprism_ds.parallel import deepspeed_private
from vidprism_ds.parallel.expert_shard import LocalExpertShard
from vidprism_ds.parallel.placement import place_experts

REPO = Path(__file__).resolve().parents[2]

# deepspeed.utils.groups function -> the arguments deepspeed_private passes (placeholders of the right kind)
PRIVATE_GROUP_CALLS = {
    "_get_expert_parallel_group_dict": (),
    "_create_expert_and_data_parallel": (2,),
    "_create_expert_data_and_model_parallel": (2, object()),  # (ep_size, mpu)
    "_get_expert_parallel_group": ("ep_size_2",),
    "_get_expert_data_parallel_group": ("ep_size_2",),
}


def test_every_private_function_the_adapter_calls_is_checked_here():
    called = set(re.findall(r"_groups\(\)\.(\w+)\(", inspect.getsource(deepspeed_private)))
    assert called == set(PRIVATE_GROUP_CALLS), (
        f"deepspeed_private calls {sorted(called)}; PRIVATE_GROUP_CALLS checks {sorted(PRIVATE_GROUP_CALLS)}")


@pytest.mark.parametrize("name", sorted(PRIVATE_GROUP_CALLS))
def test_private_group_functions_exist_and_accept_our_arguments(name):
    function = getattr(groups, name, None)
    assert callable(function), f"deepspeed.utils.groups.{name} no longer exists"
    signature = inspect.signature(function)
    try:
        signature.bind(*PRIVATE_GROUP_CALLS[name])
    except TypeError as err:
        pytest.fail(f"deepspeed.utils.groups.{name}{signature} no longer accepts "
                    f"{PRIVATE_GROUP_CALLS[name]}: {err}")


def test_group_creation_still_defaults_to_the_expert_then_data_layout():
    """ParallelContext and the dispatcher assume consecutive EP groups; DeepSpeed's other layout
    (data before expert) is opt-in through this parameter, which must stay False by default."""
    parameter = inspect.signature(groups._create_expert_and_data_parallel).parameters.get(
        "use_data_before_expert_parallel_")
    assert parameter is not None and parameter.default is False, (
        "deepspeed.utils.groups._create_expert_and_data_parallel: use_data_before_expert_parallel_=False "
        "is no longer the default")


def _create_and_look_up_groups() -> dict:
    """Runs in a fresh one-process gloo group (tests.parallel.harness)."""
    import torch.distributed as dist

    from vidprism_ds.parallel import init_expert_parallel

    name = deepspeed_private.expert_group_name(1)
    existed_before = deepspeed_private.expert_groups_exist(name)
    first = init_expert_parallel(1)
    again = init_expert_parallel(1)  # reuses the groups: creating them twice would be a second collective
    return {"existed_before": existed_before, "exists_after": deepspeed_private.expert_groups_exist(name),
            "ep_ranks": dist.get_process_group_ranks(first.ep_group),
            "expert_data_ranks": dist.get_process_group_ranks(first.expert_data_group),
            "same_groups_again": again.ep_group is first.ep_group
            and again.expert_data_group is first.expert_data_group}


@pytest.mark.slow
def test_groups_are_created_once_and_found_by_name_in_one_process():
    (report,) = run_workers("tests.parallel.test_deepspeed_private:_create_and_look_up_groups", 1)
    assert report == {"existed_before": False, "exists_after": True, "ep_ranks": [0], "expert_data_ranks": [0],
                      "same_groups_again": True}


def _public_attributes(module: nn.Module) -> set[str]:
    return {k for k in vars(module) if not k.startswith("_") and k != "training"}


def test_moe_init_sets_nothing_the_expert_shard_lacks():
    """LocalExpertShard skips MoE.__init__, so anything new that MoE.__init__ sets (and the engine may read)
    must be looked at before DeepSpeed is upgraded."""
    real = MoE(hidden_size=4, expert=nn.Linear(4, 4), num_experts=2, ep_size=2)
    known = set(deepspeed_private.MOE_ATTRIBUTES_READ_BY_ENGINE) | set(deepspeed_private.MOE_ATTRIBUTES_NOT_NEEDED)
    assert _public_attributes(real) == known, (
        f"deepspeed.moe.layer.MoE.__init__ now sets {sorted(_public_attributes(real) - known)} and no longer "
        f"sets {sorted(known - _public_attributes(real))}")
    assert real.expert_group_name == deepspeed_private.expert_group_name(2), (
        f"MoE names its expert groups {real.expert_group_name!r}, not {deepspeed_private.expert_group_name(2)!r}")
    assert f"{deepspeed_private.MOE_LOCAL_EXPERTS_PATH}.0.weight" in real.state_dict(), (
        f"MoE's local experts are no longer at {deepspeed_private.MOE_LOCAL_EXPERTS_PATH}")


def test_expert_shard_provides_what_the_engine_reads():
    placement = place_experts([4.0, 3.0, 2.0, 1.0], 2)
    experts = {e: nn.Linear(4, 4) for e in placement.local_experts(0)}
    shard = LocalExpertShard(experts, placement, deepspeed_private.expert_group_name(2))
    read = {name: getattr(shard, name) for name in deepspeed_private.MOE_ATTRIBUTES_READ_BY_ENGINE}
    assert read == {"num_experts": 4, "ep_size": 2, "expert_group_name": "ep_size_2", "num_local_experts": 2}
    assert sorted(shard.state_dict()) == sorted(f"{deepspeed_private.MOE_LOCAL_EXPERTS_PATH}.{slot}.{p}"
                                                for slot in range(2) for p in ("weight", "bias"))
    assert (inspect.signature(LocalExpertShard.set_deepspeed_parallelism).parameters.keys()
            == inspect.signature(MoE.set_deepspeed_parallelism).parameters.keys()), (
        f"deepspeed.moe.layer.MoE.set_deepspeed_parallelism is now {inspect.signature(MoE.set_deepspeed_parallelism)}")


def test_engine_checkpoints_still_rename_experts_under_that_path():
    prefix = f"'.{deepspeed_private.MOE_LOCAL_EXPERTS_PATH}.'"
    assert prefix in inspect.getsource(DeepSpeedEngine), (
        f"DeepSpeedEngine's checkpoint code no longer uses {prefix} for expert parameters")


def test_marked_parameters_are_expert_parameters_in_their_own_optimizer_group():
    expert, shared = nn.Linear(4, 4), nn.Linear(4, 4)
    deepspeed_private.mark_expert_parameters(expert, "ep_size_2")
    assert all(is_moe_param(p) for p in expert.parameters()), "deepspeed.moe.utils.is_moe_param changed"
    assert not any(is_moe_param(p) for p in shared.parameters())
    param_groups = split_params_into_different_moe_groups_for_optimizer(
        [{"name": "head", "params": list(shared.parameters()) + list(expert.parameters())}])
    by_name = {g["name"]: g for g in param_groups}
    assert set(by_name) == {"head", "ep_size_2"}, (
        f"deepspeed.moe.utils.split_params_into_different_moe_groups_for_optimizer made groups {sorted(by_name)}")
    assert by_name["ep_size_2"]["moe"] is True
    assert {id(p) for p in by_name["ep_size_2"]["params"]} == {id(p) for p in expert.parameters()}


def test_installed_deepspeed_is_inside_the_pinned_range():
    import deepspeed
    from packaging.requirements import Requirement

    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    (pin,) = [Requirement(line) for line in lines if line.startswith("deepspeed")]
    assert deepspeed.__version__ in pin.specifier, (
        f"deepspeed {deepspeed.__version__} is installed but requirements.txt pins {pin}: run this file's "
        f"checks against it, then move the pin")



@pytest.mark.parametrize("optimizer_path", ["deepspeed.runtime.zero.stage_1_and_2:DeepSpeedZeroOptimizer",
                                            "deepspeed.runtime.bf16_optimizer:BF16_Optimizer"])
def test_optimizer_fragments_can_still_be_linked_again(optimizer_path):
    """deepspeed_private.link_state_fragments resets this flag and calls this method so that expert groups'
    optimizer state is reachable through the safe_get/safe_set tensor-fragment API (topology resume)."""
    import importlib
    module_name, class_name = optimizer_path.split(":")
    optimizer_class = getattr(importlib.import_module(module_name), class_name)
    assert callable(getattr(optimizer_class, "_lazy_init_hp_params_optimizer_state", None)), (
        f"{optimizer_path}._lazy_init_hp_params_optimizer_state no longer exists")
    assert "_hp_optimizer_states_linked" in inspect.getsource(optimizer_class), (
        f"{optimizer_path} no longer keeps the _hp_optimizer_states_linked flag")
