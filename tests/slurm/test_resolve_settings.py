"""slurm/resolve_settings.py without a cluster: the tensor-parallel placement rule (TP_SIZE) and the
settings it prints. The scripts themselves run on a real Slurm cluster in test_slurm_scripts.py."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("resolve_settings", REPO / "slurm" / "resolve_settings.py")
resolve_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(resolve_settings)


@pytest.mark.parametrize("environ, expected", [
    ({"SLURM_TASKS_PER_NODE": "8(x4)"}, [8, 8, 8, 8]),
    ({"SLURM_TASKS_PER_NODE": "8(x2),4", "SLURM_NTASKS_PER_NODE": "8"}, [8, 8, 4]),  # the real layout wins
    ({"SLURM_NTASKS_PER_NODE": "2"}, [2]),
    ({}, []),
])
def test_tasks_per_node_reads_slurms_compressed_list(environ, expected):
    assert resolve_settings.tasks_per_node(environ) == expected


def test_tp_groups_inside_nodes_pass_and_straddling_ones_name_the_divisors():
    assert resolve_settings.tensor_parallel_placement_problem(4, [8, 8, 8, 8]) is None
    assert resolve_settings.tensor_parallel_placement_problem(8, [8, 8]) is None
    assert resolve_settings.tensor_parallel_placement_problem(1, [3]) is None
    problem = resolve_settings.tensor_parallel_placement_problem(3, [8, 8])
    assert problem.startswith("parallel.tp_size: 3 does not divide the 8 tasks (GPUs) of a node")
    assert "one of [1, 2, 4, 8]" in problem
    # a short last node: a group of 8 would take 4 ranks from it and 4 from the node before
    problem = resolve_settings.tensor_parallel_placement_problem(8, [8, 8, 4])
    assert "the 4 tasks" in problem and "one of [1, 2, 4]" in problem


def _resolve(monkeypatch, tmp_path, capsys, tasks_per_node: str, ntasks: int, *overrides: str):
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", tasks_per_node)
    monkeypatch.setenv("SLURM_NTASKS", str(ntasks))
    exports = io.StringIO()
    args = ["--", "--set", f"train.output_dir={tmp_path / 'run'}"]
    for override in overrides:
        args += ["--set", override]
    code = resolve_settings.main(args, exports=exports)
    return code, capsys.readouterr().err, exports.getvalue()


def test_a_tp_size_that_fits_the_nodes_is_printed_with_its_layout(monkeypatch, tmp_path, capsys):
    code, log, exports = _resolve(monkeypatch, tmp_path, capsys, "2(x2)", 4, "parallel.tp_size=2")
    assert code == 0 and exports.startswith("VP_OUTPUT_DIR=")
    assert ("parallel       tp_size 2, ep_size 1, data-parallel 2 of 4 ranks; TP groups of 2 consecutive ranks "
            "inside each node (2 tasks a node)") in log


def test_a_tp_size_that_would_span_nodes_fails_before_srun(monkeypatch, tmp_path, capsys):
    # the layout of the Slurm tests: one task on each of two nodes
    code, log, exports = _resolve(monkeypatch, tmp_path, capsys, "1(x2)", 2, "parallel.tp_size=2")
    assert code == 2 and exports == ""
    assert "config error: parallel.tp_size: 2 does not divide the 1 tasks (GPUs) of a node" in log


def test_a_tp_size_that_does_not_divide_the_world_fails_with_train_pys_message(monkeypatch, tmp_path, capsys):
    # 2 per node, but the expert-parallel group does not fit the 1 data-parallel rank left
    code, log, _ = _resolve(monkeypatch, tmp_path, capsys, "2", 2, "parallel.tp_size=2", "parallel.ep_size=2")
    assert code == 2 and "config error: parallel.ep_size: 2 does not divide the data-parallel size 1" in log
