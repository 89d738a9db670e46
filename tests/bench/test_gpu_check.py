"""``bench/gpu_check.py --tiny``: every section of the GPU command runs on CPU and reports its figures.

The compile section is left out here (tests/train/test_compile.py covers ``train.compile`` on CPU; a
compiled step takes minutes to build on 2 cores)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_run_reports_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--skip", "train_compiled",
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={
                              **__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "tiny" and report["device"]["gemm_tflops"] > 0

    train = report["train"]
    assert train["dtype"] == "torch.bfloat16"  # the bf16 path, on the CPU
    assert train["step_ms"] > 0 and train["clips_per_s"] > 0
    assert train["estimate"]["total_bytes"] > train["estimate"]["activation_bytes"] > 0
    assert train["host_syncs_per_step"]["forward_and_loss"] == 0  # the model and the losses never sync

    assert report["head_vs_official"]["ours_official_mode_ms"] > 0
    loader = report["loader"]
    # same frames and crop boxes through both decodes; on the CPU only the resize arithmetic differs
    assert loader["device_vs_cpu_decode_pixels"]["max_abs"] <= 8
    assert all(loader[name]["clips"] == 16 for name in ("uint8_batches", "jpeg_batches_device_decode"))
    assert report["fit_cpu_decode"]["steps"] == 3
    assert report["fit_device_decode"].startswith("not run")  # needs a GPU
    assert report["eval"]["videos"] == 4 and report["eval"]["views_per_video"] == 6
    assert "train_compiled" not in report
