"""The slurm/*.sh batch scripts, submitted with sbatch to a real local Slurm cluster of two virtual nodes.

Each job runs the tiny synthetic CPU configuration (tests/tiny_runs.py) with one task per node, so
train.py forms a world of 2 across the nodes through the scripts' rendezvous. Where Slurm cannot be
installed or started, every test here is skipped with the reason (make test prints skip reasons).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.cluster import start_cluster
from tests.tiny_runs import tiny_overrides
from vidprism_ds.config import dump_yaml, load_config

REPO = Path(__file__).resolve().parents[2]
# CPU virtual nodes: one task per node, no GPUs (the scripts' defaults ask for 8 per node).
TWO_NODES = ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=0", "--time=20"]
JOB_TIMEOUT = 600


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster, reason = start_cluster(tmp_path_factory.mktemp("slurm"))
    if cluster is None:
        pytest.skip(f"no local Slurm cluster on this machine: {reason}")
    yield cluster
    cluster.stop()


def _config(tmp_path: Path, shards, output_dir: Path, **extra) -> Path:
    path = tmp_path / f"{output_dir.name}.yaml"
    dump_yaml(load_config(None, tiny_overrides(shards, output_dir, parallel__ep_size=2, **extra)), path)
    return path


def _job_env(**settings) -> dict[str, str]:
    env = {"PYTHON": sys.executable, "VIDPRISM_ROOT": str(REPO)}
    env.update({key: str(value) for key, value in settings.items()})
    return env


def _submit(cluster, script: str, log: Path, args=(), options=(), **settings) -> str:
    return cluster.sbatch(REPO / "slurm" / script, list(args), [*TWO_NODES, f"--output={log}", *options],
                          _job_env(**settings), cwd=log.parent)


def _history(output_dir: Path) -> list[dict]:
    path = output_dir / "train_history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _checkpoint_metas(output_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((output_dir / "checkpoints").glob("*/vidprism_meta.json"))]


def _assert_finished(cluster, job_id: str, log: Path) -> dict:
    info = cluster.wait_for_job(job_id, JOB_TIMEOUT)
    text = log.read_text() if log.is_file() else "(no job log)"
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{text[-6000:]}"
    return info


def test_train_k710_runs_across_both_nodes_and_writes_a_checkpoint(cluster, tiny_shards, tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path, tiny_shards, out, train__epochs=2, train__save_every_steps=2)
    log = tmp_path / "train.log"
    job = _submit(cluster, "train_k710.sh", log, CONFIG=config, OUTPUT_DIR=out)
    info = _assert_finished(cluster, job, log)

    text = log.read_text()
    assert info["NodeList"] == "n[1-2]" and info["NumNodes"] == "2"
    assert "nodes n[1-2] (2), tasks 2 (1 per node)" in text
    assert f"MASTER_ADDR=127.0.0.1 MASTER_PORT={15000 + int(job) % 20000}" in text
    assert f"output         {out}" in text and "no complete checkpoint yet: starts from step 0" in text
    metas = _checkpoint_metas(out)
    assert metas and {(m["world_size"], m["ep_size"]) for m in metas} == {(2, 2)}  # both nodes' ranks
    steps = [h["step"] for h in _history(out)]
    assert steps == list(range(1, len(steps) + 1)) and max(m["step"] for m in metas) == steps[-1]
    assert (out / "eval" / "final" / "metrics.json").is_file() and (out / "export" / "model_fp32.pt").is_file()

    # slurm/eval.sh on the same two nodes evaluates the newest checkpoint to the same numbers
    final = json.loads((out / "eval" / "final" / "metrics.json").read_text())
    (out / "eval").rename(tmp_path / "training_eval")
    eval_log = tmp_path / "eval.log"
    _assert_finished(cluster, _submit(cluster, "eval.sh", eval_log, args=[str(config)], OUTPUT_DIR=out), eval_log)
    again = json.loads((out / "eval" / "final" / "metrics.json").read_text())
    assert again["top1"] == final["top1"] and again["samples"] == final["samples"]

    # slurm/finetune.sh from the exported model: a new classifier, every other weight from the export
    tuned, tune_log = tmp_path / "tuned", tmp_path / "finetune.log"
    tune_config = _config(tmp_path, tiny_shards, tuned, train__epochs=1)
    job = _submit(cluster, "finetune.sh", tune_log, args=["ucf101"], CONFIG=tune_config, OUTPUT_DIR=tuned,
                  INIT_FROM=out / "export" / "model_fp32.pt")
    _assert_finished(cluster, job, tune_log)
    assert "fine-tune      ucf101 from" in tune_log.read_text() and "(classifier: fresh)" in tune_log.read_text()
    assert _history(tuned) and (tuned / "export" / "model_fp32.pt").is_file()


def test_a_signalled_job_saves_requeues_and_resumes_where_it_stopped(cluster, tiny_shards, tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path, tiny_shards, out, train__epochs=12, train__save_every_steps=100)
    log = tmp_path / "train.log"
    job = _submit(cluster, "train_k710.sh", log, CONFIG=config, OUTPUT_DIR=out)

    deadline = time.monotonic() + JOB_TIMEOUT
    while len(_history(out)) < 4:  # a few steps in, and no periodic checkpoint yet
        assert cluster.job(job).get("JobState") in ("PENDING", "RUNNING"), log.read_text()[-4000:]
        assert time.monotonic() < deadline, "the job did not start training in time"
        time.sleep(0.5)
    # what --signal=B:USR1@600 does 10 minutes before the time limit
    cluster.signal_batch_script(job, "USR1")
    info = _assert_finished(cluster, job, log)

    text = log.read_text()
    assert info["Restarts"] == "1", info
    assert "got SIGUSR1: forwarding it" in text and f"requeueing job {job}" in text
    resumed = [line for line in text.splitlines() if "checkpoints" in line and "resumes from" in line]
    assert len(resumed) == 1, text[-6000:]
    stopped_at = int(resumed[0].split("(step ")[1].rstrip(")"))
    assert 4 <= stopped_at < 24  # saved at the signal, not at a periodic save (every 100 steps)
    steps = [h["step"] for h in _history(out)]
    # one history line per step over both runs: the requeued run continued at stopped_at + 1
    assert steps == list(range(1, 25)), steps
    assert max(m["step"] for m in _checkpoint_metas(out)) == 24


def test_shard_array_slices_a_list_and_the_last_task_merges(cluster, tmp_path):
    from vidprism_ds.data.manifest import load_manifest
    from vidprism_ds.data.synthetic import make_dataset

    videos = make_dataset(tmp_path / "videos", train_per_class=3, val_per_class=1, size=64, num_frames=8, seed=0)
    out, log = tmp_path / "shards", tmp_path / "shard_%a.log"
    job = cluster.sbatch(REPO / "slurm" / "shard_array.sh",
                         ["--root", str(tmp_path / "videos"), "--list", str(videos["train"]), "--out", str(out),
                          "--dataset", "synthetic", "--shard-size", "2"],
                         ["--array=0-2", "--ntasks=1", "--cpus-per-task=1", f"--output={log}"], _job_env(), cwd=tmp_path)
    for task in range(3):
        info = cluster.wait_for_job(f"{job}_{task}", JOB_TIMEOUT)
        task_log = tmp_path / f"shard_{task}.log"
        assert info["JobState"] == "COMPLETED", task_log.read_text() if task_log.is_file() else info
    manifest = load_manifest(out)
    assert manifest.num_samples == 12  # 4 classes x 3 videos, each in exactly one slice
    assert len(list((out / "slices").iterdir())) == 3
    logs = "".join((tmp_path / f"shard_{t}.log").read_text() for t in range(3))
    assert logs.count("slices.py merge: ") >= 1 and f"{out / 'manifest.json'}: 12 samples" in logs


def test_a_bad_config_fails_the_job_before_srun_with_the_keys_name(cluster, tiny_shards, tmp_path):
    out = tmp_path / "run"
    config = _config(tmp_path, tiny_shards, out)
    log = tmp_path / "bad.log"
    job = _submit(cluster, "train_k710.sh", log, args=["--set", "train.bogus_key=1"], CONFIG=config, OUTPUT_DIR=out)
    info = cluster.wait_for_job(job, JOB_TIMEOUT)
    text = log.read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", f"{info}\n{text[-3000:]}"
    assert "config error: train.bogus_key" in text and "starting: srun" not in text
    assert info["Restarts"] == "0"  # a failure is not requeued

    # TP_SIZE reaches the settings, and a tensor-parallel group that would span the two 1-task nodes fails here
    tp_log = tmp_path / "tp.log"
    info = cluster.wait_for_job(_submit(cluster, "train_k710.sh", tp_log, CONFIG=config, OUTPUT_DIR=out, TP_SIZE=2),
                                JOB_TIMEOUT)
    text = tp_log.read_text()
    assert info["ExitCode"] == "2:0" and "starting: srun" not in text, f"{info}\n{text[-3000:]}"
    assert "config error: parallel.tp_size: 2 does not divide the 1 tasks (GPUs) of a node" in text
