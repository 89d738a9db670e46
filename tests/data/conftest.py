"""Fixtures for the data tests: tiny real video files and shard directories made in tmp paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vidprism_ds.data.generated_videos import write_video
from vidprism_ds.data.prep.run import ShardJob, run_sharding
from vidprism_ds.data.presets import SYNTHETIC_CLASSES
from vidprism_ds.data.sampling import FrameSettings
from vidprism_ds.data.synthetic import render_video
from vidprism_ds.data.video_lists import read_video_list

REPO = Path(__file__).resolve().parents[2]
SHARD_SCRIPT = REPO / "data_prep" / "shard.py"


def write_synthetic_videos(root: Path, count: int, size: int = 32, frames: int = 12, seed: int = 0,
                           folder: str = "videos") -> list[tuple[str, int]]:
    """``count`` small h264 videos under root/folder; returns (relative path, label) rows."""
    rows = []
    for k in range(count):
        label = k % len(SYNTHETIC_CLASSES)
        rel = f"{folder}/clip {k:03d}.mp4"  # a space in every name: lists must cope
        write_video(root / rel, render_video((seed, k), label, size, frames))
        rows.append((rel, label))
    return rows


def write_list(path: Path, rows) -> Path:
    path.write_text("".join(f"{rel} {label}\n" for rel, label in rows), encoding="utf-8")
    return path


def shard_in_process(root: Path, list_file: Path, out_dir: Path, shard_size: int, **frame_settings) -> dict:
    """Shard a list with the library (one worker) and return the manifest JSON."""
    entries, classes = read_video_list(list_file, root, "auto", list(SYNTHETIC_CLASSES))
    job = ShardJob(entries=entries, out_dir=out_dir, frames=FrameSettings(**frame_settings), classes=classes,
                   num_classes=len(classes), source={"list": str(list_file), "sha256": "test"},
                   dataset="synthetic", shard_size=shard_size, workers=1, mp_context="fork")
    run_sharding(job, progress=False)
    return json.loads((out_dir / "manifest.json").read_text())


def run_shard_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHARD_SCRIPT), "--no-progress", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> dict:
    """10 videos (32x32, 12 frames) in 4 shards of 3, 3, 3, 1 samples; {"dir", "root", "list", "rows"}."""
    base = tmp_path_factory.mktemp("synthetic_shards")
    rows = write_synthetic_videos(base, 10)
    list_file = write_list(base / "list.txt", rows)
    shard_in_process(base, list_file, base / "shards", shard_size=3)
    return {"dir": base / "shards", "root": base, "list": list_file, "rows": rows}


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(write_synthetic_videos=write_synthetic_videos, write_list=write_list,
                           shard_in_process=shard_in_process, run_shard_cli=run_shard_cli, shard_script=SHARD_SCRIPT)


@pytest.fixture
def make_rows():
    """``make_rows(root, count)``: write ``count`` tiny videos under root and return their list rows."""
    return lambda root, count, **kwargs: write_synthetic_videos(Path(root), count, **kwargs)
