"""train.py as users run it: config errors, SIGTERM -> checkpoint + exit 3, SIGKILL -> resume, from any
folder, and docs/data.md's "your own data" walkthrough end to end."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny_runs import tiny_overrides
from vidprism_ds.config import dump_yaml, load_config
from vidprism_ds.train.cli import main
from vidprism_ds.train.run_config import DEFAULT_DS_CONFIG

REPO = Path(__file__).resolve().parents[2]
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")


def _config_file(tmp_path, shards, output_dir, **extra) -> Path:
    path = tmp_path / f"{Path(output_dir).name}.yaml"
    dump_yaml(load_config(None, tiny_overrides(shards, output_dir, **extra)), path)
    return path


def _plain_process_env() -> dict[str, str]:
    """This environment without a launcher's variables: the child is a world of one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key in LAUNCHER_VARIABLES:
        env.pop(key, None)
    return env


def _start(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", "--config", str(config)], cwd=REPO, env=_plain_process_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _history(output_dir: Path) -> list[dict]:
    path = output_dir / "train_history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _wait_for_steps(proc, output_dir: Path, steps: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(_history(output_dir)) < steps:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "training did not reach the step in time"
        time.sleep(0.2)


def test_unknown_key_fails_at_start_with_its_name(capsys):
    assert main(["--set", "train.bogus=1"]) == 2
    assert "train.bogus" in capsys.readouterr().err


def test_batch_size_conflict_with_deepspeed_json_is_rejected(tmp_path, capsys):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": 3}))
    assert main(["--deepspeed_config", str(ds), "--set", "train.micro_batch=4", "--no-baseline"]) == 2
    assert "train.micro_batch: 4 disagrees" in capsys.readouterr().err


@pytest.mark.parametrize("settings, message", [
    # 4 processes in TP pairs are 2 data-parallel ranks: EP 4 cannot spread inside them
    (["parallel.tp_size=2", "parallel.ep_size=4"], "parallel.ep_size: 4 does not divide the data-parallel size 2"),
    # the batch arithmetic counts data-parallel ranks: 8 clips = 4 x 2 DP ranks, not 4 x 4 processes
    (["parallel.tp_size=2", "train.global_batch=8", "train.micro_batch=4", "train.grad_accum=2"],
     "train.grad_accum: 2 disagrees"),
])
def test_the_launch_check_counts_data_parallel_ranks_under_tensor_parallelism(monkeypatch, capsys, settings, message):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # a complete launcher environment; nothing connects
    monkeypatch.setenv("MASTER_PORT", "29500")
    argv = ["--no-baseline"] + [arg for setting in settings for arg in ("--set", setting)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_3(tiny_shards, tmp_path):
    out = tmp_path / "sigterm"
    proc = _start(_config_file(tmp_path, tiny_shards, out, train__epochs=50))
    _wait_for_steps(proc, out, 2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 3, proc.stdout.read()
    latest = (out / "checkpoints" / "latest").read_text().strip()
    assert (out / "checkpoints" / latest / "vidprism_meta.json").is_file()
    assert int(latest.split("_")[1]) >= 2


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_and_reproduces_the_losses(tiny_shards, tmp_path):
    common = dict(train__epochs=4, train__save_every_steps=2)
    reference_out = tmp_path / "uninterrupted"
    ref = _start(_config_file(tmp_path, tiny_shards, reference_out, **common))
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    reference = {h["step"]: h["total"] for h in _history(reference_out)}
    assert len(reference) == 16

    out = tmp_path / "killed"
    config = _config_file(tmp_path, tiny_shards, out, **common)
    proc = _start(config)
    _wait_for_steps(proc, out, 7)
    proc.kill()  # SIGKILL: no chance to save
    proc.wait()
    killed_at = len(_history(out))
    again = _start(config)
    assert again.wait(timeout=300) == 0, again.stdout.read()

    history = _history(out)
    resumed = history[killed_at:]
    first_resumed_step = resumed[0]["step"]
    assert killed_at - first_resumed_step + 1 <= 2  # lost at most the steps since the last checkpoint
    assert [h["step"] for h in resumed] == list(range(first_resumed_step, 17))
    for h in resumed:
        assert h["total"] == pytest.approx(reference[h["step"]], abs=1e-5), h["step"]


@pytest.mark.slow
def test_eval_only_and_export_reproduce_the_trained_model(tiny_shards, tmp_path):
    import torch

    from vidprism_ds.model.video_model import build_video_model

    out = tmp_path / "trained"
    config = _config_file(tmp_path, tiny_shards, out, train__epochs=2, parallel__ep_size=1)
    assert _start(config).wait(timeout=300) == 0
    final = json.loads((out / "eval" / "final" / "metrics.json").read_text())
    finished_export = out / "export" / "model_fp32.pt"  # train.export_on_finish: written by every finished run
    assert finished_export.is_file() and finished_export.with_suffix(".yaml").is_file()

    (out / "eval").rename(tmp_path / "first_eval")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    export = tmp_path / "model.pt"
    done = subprocess.run([sys.executable, "train.py", "--config", str(config), "--eval-only", "--export",
                           str(export)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    again = json.loads((out / "eval" / "final" / "metrics.json").read_text())
    assert again["top1"] == final["top1"] and again["per_class_accuracy"] == final["per_class_accuracy"]

    cfg = load_config(export.with_suffix(".yaml"))
    model = build_video_model(cfg.model, num_classes=4, num_frames=cfg.data.num_frames).model
    model.load_state_dict(torch.load(export, weights_only=True))  # strict: every weight, plain names
    on_finish = torch.load(finished_export, weights_only=True)
    assert on_finish.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(on_finish[key], value), key


@pytest.mark.parametrize("error, code, line", [
    ("out_of_space", 1, "error: no space left on the device holding /scratch/run/checkpoints/step_00000010"),
    ("unsafe", 2, "error: /scratch/run/checkpoints/step_00000010/mp_rank_00_model_states.pt: refused to load"),
])
def test_a_full_disk_or_an_unsafe_checkpoint_is_one_line(tmp_path, monkeypatch, capsys, tiny_shards, error, code,
                                                        line):
    import vidprism_ds.train.run as run_module
    from vidprism_ds.train.checkpoint_engine import UnsafeCheckpointError
    from vidprism_ds.utils.files import out_of_space

    def failing_run(*args, **kwargs):
        if error == "out_of_space":
            raise out_of_space(Path("/scratch/run/checkpoints/step_00000010"), RuntimeError("unexpected pos 1 vs 2"))
        raise UnsafeCheckpointError("/scratch/run/checkpoints/step_00000010/mp_rank_00_model_states.pt: refused "
                                    "to load: ...")

    monkeypatch.setattr(run_module, "run_experiment", failing_run)
    config = _config_file(tmp_path, tiny_shards, tmp_path / "out")
    assert main(["--config", str(config)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err


def test_a_garbled_manifest_is_one_line_naming_it_before_anything_starts(tmp_path, capsys, tiny_shards):
    import shutil

    broken = tmp_path / "train_shards"
    shutil.copytree(tiny_shards["train"], broken)
    (broken / "manifest.json").write_text("{ not json")
    config = _config_file(tmp_path, {**tiny_shards, "train": broken}, tmp_path / "out")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json: not a JSON document" in err[0], err


def test_the_default_deepspeed_config_is_found_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_DS_CONFIG.is_file() and DEFAULT_DS_CONFIG.is_absolute()
    # gets past reading the DeepSpeed JSON and stops at the next check, before anything is written
    assert main(["--set", "parallel.ep_size=3"]) == 2
    err = capsys.readouterr().err
    assert "parallel.ep_size" in err and "deepspeed_config" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_relative_deepspeed_config_missing_here_names_the_repositorys(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--deepspeed_config", "ds_configs/zero1.json"]) == 2
    err = capsys.readouterr().err
    assert f"current folder ({tmp_path})" in err and str(REPO / "ds_configs" / "zero1.json") in err, err


def test_the_output_folder_is_announced_as_an_absolute_path(tmp_path, monkeypatch, capsys, tiny_shards):
    import vidprism_ds.train.run as run_module
    from vidprism_ds.train.loop_state import RunResult

    monkeypatch.setattr(run_module, "run_experiment", lambda *args, **kwargs: RunResult())
    config = _config_file(tmp_path, tiny_shards, "runs/relative")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(config)]) == 0
    assert f"train.py: outputs in {tmp_path / 'runs' / 'relative'} (train.output_dir)" in capsys.readouterr().out


OWN_DATA_HEADING = "## Your own data in 5 minutes"


def own_data_commands() -> str:
    """The shell block of docs/data.md's walkthrough, as a user copies it."""
    section = (REPO / "docs" / "data.md").read_text(encoding="utf-8").split(OWN_DATA_HEADING, 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_the_own_data_walkthrough_runs_as_documented(tmp_path):
    from vidprism_ds.data.synthetic import make_dataset

    data = tmp_path / "my videos"  # a space: the documented commands must quote their paths
    make_dataset(data, train_per_class=8, val_per_class=2, size=64, num_frames=16, seed=0)
    script, found = re.subn(r"^DATA=.*$", f"DATA={shlex.quote(str(data))}", own_data_commands(), count=1,
                            flags=re.MULTILINE)
    assert found == 1
    # the documented commands as they are, with training cut to two steps of half the demo's batch and no
    # loader worker process
    first_train = script.index("python train.py")
    shorter = "SETTINGS+=(--set train.max_steps=2 --set train.global_batch=16 --set data.num_workers=0)\n"
    script = script[:first_train] + shorter + script[first_train:]
    # `python` is this interpreter. A shell function rather than its folder first on PATH: that folder
    # also holds another ninja, and DeepSpeed's C++ op, built by the other one, would be rebuilt (minutes).
    script = f'python() {{ {shlex.quote(sys.executable)} "$@"; }}\n' + script
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=_plain_process_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    run = data / "run"
    assert [json.loads(line)["step"] for line in (run / "train_history.jsonl").read_text().splitlines()] == [1, 2]
    metrics = json.loads((run / "eval" / "final" / "metrics.json").read_text())
    assert metrics["samples"] == 8 and "top5" not in metrics  # 4 classes: top-5 says nothing
    assert list(metrics["per_class_accuracy"]) == (data / "labels.txt").read_text().splitlines()
    assert done.stdout.count("eval final:") == 2  # training's evaluation, then --eval-only's
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert summary["clips"] == 8 and summary["class_names"] == list(metrics["per_class_accuracy"])
    assert {p.name for p in (run / "analysis").glob("*.png")} == {
        "expert_weight_by_class.png", "expert_similarity.png", "keep_positions.png"}
