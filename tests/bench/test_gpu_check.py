"""``bench/gpu_check.py --tiny``: every section of the GPU command runs on CPU and reports its figures.

On the CPU ``train.compile: auto`` leaves the model eager (tests/train/test_compile.py covers compiling on
CPU; a compiled step takes minutes to build on 2 cores), so ``train_eager`` would repeat ``train`` and is
left out. The official-loop section needs the official code: ``VIDPRISM_OFFICIAL_REPO=/path/to/VidPrism``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_REPO = os.environ.get("VIDPRISM_OFFICIAL_REPO")


@pytest.mark.slow
def test_tiny_run_reports_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    official = ["--official-repo", OFFICIAL_REPO] if OFFICIAL_REPO else []
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--skip", "train_eager", *official,
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={
                              **__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "tiny" and report["device"]["gemm_tflops"] > 0
    # which SDPA implementation the tower's attention runs (on the CPU: its flash kernel)
    assert any("scaled_dot_product" in name for name in report["device"]["sdpa_kernels"])

    train = report["train"]
    assert train["dtype"] == "torch.bfloat16"  # the bf16 path, on the CPU
    assert train["step_ms"] > 0 and train["clips_per_s"] > 0
    assert train["estimate"]["total_bytes"] > train["estimate"]["activation_bytes"] > 0
    assert train["host_syncs_per_step"]["forward_and_loss"] == 0  # the model and the losses never sync
    # the preset as shipped: compile and checkpointing auto, which on a CPU mean eager and no recompute
    assert (train["grad_checkpointing"], train["compiled"], train["checkpointed_blocks"]) == ("auto", False, "0 of 2")
    if OFFICIAL_REPO:
        assert report["official_loop"]["ours_over_official"] > 0 and report["official_loop"]["micro_batch"] == 2
    else:
        assert "official-repo" in report["official_loop"]["not_run"]

    assert report["head_vs_official"]["ours_official_mode_ms"] > 0
    loader = report["loader"]
    # same frames and crop boxes through both decodes; on the CPU only the resize arithmetic differs
    assert loader["device_vs_cpu_decode_pixels"]["max_abs"] <= 8
    assert all(loader[name]["clips"] == 16 for name in ("uint8_batches", "jpeg_batches_device_decode"))
    assert report["fit_cpu_decode"]["steps"] == 3 and report["fit_cpu_decode"]["share_of_compute_rate"] > 0
    assert report["fit_device_decode"].startswith("not run")  # needs a GPU
    assert report["eval"]["videos"] == 4 and report["eval"]["views_per_video"] == 6
    assert "train_eager" not in report
