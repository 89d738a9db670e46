"""A quiet start (issue 31): what train.py prints before its first step line, and the config errors found
by the launch check, under a launcher's environment."""

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from vidprism_ds.config import load_config
from vidprism_ds.train.library_output import dropping_stdout_lines, quiet_libraries
from vidprism_ds.train.reporting import format_train_line, zero_loss_terms

REPO = Path(__file__).resolve().parents[2]


def test_megatron_core_is_imported_only_with_tensor_parallelism():
    code = ("import sys; import vidprism_ds.train.trainer, vidprism_ds.train.checkpoint, vidprism_ds.train.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'megatron'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert out.stdout.splitlines()[-1] == "[]", out.stdout[-300:]


def test_library_lines_that_do_not_apply_are_filtered_and_others_are_not(capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_libraries(on_gpu=False)
        warnings.warn("Transformer Engine and Apex are not installed. Falling back to Torch optimizers.")
        warnings.warn("`torch.distributed.all_gather_into_tensor` is deprecated. Please use "  # torch 2.14's text
                      "`torch.distributed.all_gather_single` instead.", FutureWarning)
        warnings.warn("something else", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else"]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    extension_logger = logging.getLogger("torch.utils.cpp_extension")
    extension_logger.addHandler(handler)
    try:
        extension_logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        extension_logger.warning("another message")
    finally:
        extension_logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["another message"]
    with dropping_stdout_lines():
        print("DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully")
        print("a line of ours")
    assert capsys.readouterr().out == "a line of ours\n"


def test_the_step_line_leaves_out_loss_terms_that_are_zero_for_the_model():
    terms = {"ce": 1.5, "balance": 0.1, "router_aux": 0.0, "router_z": 0.0}
    plain = format_train_line(3, 0, 10.0, 1e-3, terms, None, 0.0, omit=zero_loss_terms(load_config(None, []).model))
    assert "ce 1.5000" in plain and "balance" in plain and "router" not in plain
    routed = load_config(None, ["model.head.experts_per_rate=2"]).model
    assert "router_aux 0.0000 router_z 0.0000" in format_train_line(3, 0, 10.0, 1e-3, terms, None, 0.0,
                                                                   omit=zero_loss_terms(routed))


def test_the_memory_estimate_is_one_line_on_a_cpu_run():
    from vidprism_ds.train.memory.fit import CPU_RUN_LINE
    assert "does not apply to a CPU run" in CPU_RUN_LINE and "\n" not in CPU_RUN_LINE


@pytest.mark.parametrize("problem", ["ep_size", "batch", "zero3"])
def test_a_config_error_under_a_launcher_is_its_own_line_on_stderr_and_exit_2(tmp_path, problem):
    config = json.loads((REPO / "ds_configs" / "zero2.json").read_text())
    if problem == "batch":  # the JSON disagrees with the config's batch size
        config["train_micro_batch_size_per_gpu"] = 3
    if problem == "zero3":
        config["zero_optimization"]["stage"] = 3
    (tmp_path / "ds.json").write_text(json.dumps(config))
    args = ["--deepspeed_config", str(tmp_path / "ds.json"), "--set", f"train.output_dir={tmp_path / 'run'}",
            "--set", f"parallel.ep_size={2 if problem == 'ep_size' else 1}"]  # ep_size 2 on one process
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29533", "PYTHONWARNINGS": "default"}
    run = subprocess.run([sys.executable, "-u", "train.py", "--local_rank=0", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, (run.stdout[-2000:], run.stderr[-2000:])
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: "), run.stderr
