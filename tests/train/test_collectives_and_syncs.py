"""The GPU path's two invariants, checked on CPU with gloo.

1. Every tensor our code hands to torch.distributed lives on the trainer's device (NCCL takes no CPU
   tensors). On CPU the trainer's device is the CPU, so the workers run with "meta" as the default
   device: a tensor created without ``device=`` (the evaluation bug this guards against) lands there and
   is caught by the recording wrappers or fails outright.
2. No host syncs of ours between logging steps: a training run under ``HostSyncCounter`` with DeepSpeed's
   backward/step counted apart has exactly the reads its logging and stop-agreement settings imply.
"""

import pytest

from tests.parallel.harness import run_workers
from tests.tiny_runs import tiny_overrides


@pytest.mark.slow
def test_every_collective_of_ours_gets_tensors_on_the_trainers_device():
    for rank_result in run_workers("tests.train.workers:collectives_on_device", 2):
        names = {name for name, _ in rank_result["seen"]}
        # the evaluation reduction, the stop agreement and the expert exchange all went through
        assert {"all_reduce", "all_to_all_single"} <= names, names
        assert {device for _, device in rank_result["seen"]} == {"cpu"}, rank_result["seen"]
        assert rank_result["samples"] == 4  # 2 batches x 1 valid video x 2 ranks
        assert rank_result["agreed"] is False


@pytest.mark.slow
def test_training_steps_make_no_host_syncs_of_ours_between_logging_steps(tiny_shards, tmp_path):
    def run(name, **extra):
        overrides = tiny_overrides(tiny_shards, tmp_path / name, train__epochs=1,
                                   train__save_every_steps=0, train__max_steps=2, **extra)
        return run_workers("tests.train.workers:count_host_syncs", 2, overrides=overrides,
                           ds_config_path="ds_configs/zero2.json")[0]

    quiet = run("quiet", logging__log_every_steps=100, train__stop_check_every=100)
    assert quiet["steps"] == 2
    # one read for the whole run: the loss history flushed when fit returns
    assert quiet["ours"] == 1, quiet["all"]
    checking = run("checking", logging__log_every_steps=100, train__stop_check_every=1)
    assert checking["ours"] == quiet["ours"] + 2  # one stop-agreement read per step
    # DeepSpeed's own syncs per step are what they are (docs/benchmarks.md records them); checkpoints apart
    assert checking["deepspeed"] == quiet["deepspeed"]
