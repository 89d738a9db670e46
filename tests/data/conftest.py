"""Fixtures for the data tests: tiny real video files and shard directories made in tmp paths."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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


SINGLE_BASE_JSON_KEYS = ("frame_times", "base_frames", "bursts")  # what shards had none of before bursts
BURST_SETTINGS = ("burst_count", "burst_length", "burst_fps")


def _single_base_json(data: bytes) -> bytes:
    meta = json.loads(data)
    for key in SINGLE_BASE_JSON_KEYS:
        meta.pop(key)
    for key in BURST_SETTINGS:
        meta["frame_settings"].pop(key)
    return json.dumps(meta, sort_keys=True).encode("utf-8")


def rewrite_as_single_base(shard_dir: Path) -> None:
    """Turn shards written with --burst-count 0 into shards as written before multi-rate shards: no
    timestamps, base or bursts in a sample's JSON, no burst settings in the manifest."""
    manifest_path = shard_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for key in BURST_SETTINGS:
        manifest["frame_settings"].pop(key)
    for shard in manifest["shards"]:
        path = shard_dir / shard["name"]
        with tarfile.open(path) as tar:
            members = [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                data = _single_base_json(data) if info.name.endswith(".json") else data
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        shard["bytes"] = path.stat().st_size
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture(scope="session")
def multirate_shards(tmp_path_factory) -> dict:
    """6 videos (32x32, 40 frames) sharded twice: multi-rate (8-frame base, 2 bursts of 8) and as
    before bursts (the same 8-frame base, no timestamps); {"dir", "single_base_dir"}."""
    base = tmp_path_factory.mktemp("multirate_shards")
    rows = write_synthetic_videos(base, 6, frames=40)
    list_file = write_list(base / "list.txt", rows)
    shard_in_process(base, list_file, base / "multirate", shard_size=4, max_frames=8, burst_length=8)
    shard_in_process(base, list_file, base / "single", shard_size=4, max_frames=8, burst_count=0)
    rewrite_as_single_base(base / "single")
    return {"dir": base / "multirate", "single_base_dir": base / "single"}


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import conftest)."""
    return SimpleNamespace(write_synthetic_videos=write_synthetic_videos, write_list=write_list,
                           shard_in_process=shard_in_process, run_shard_cli=run_shard_cli, shard_script=SHARD_SCRIPT)


@pytest.fixture
def make_rows():
    """``make_rows(root, count)``: write ``count`` tiny videos under root and return their list rows."""
    return lambda root, count, **kwargs: write_synthetic_videos(Path(root), count, **kwargs)


@pytest.fixture
def as_worker(monkeypatch):
    """``as_worker(id, count)``: make the stages (and webdataset) believe they run in that DataLoader worker."""
    monkeypatch.delenv("WORKER", raising=False)  # webdataset would take the worker from these first
    monkeypatch.delenv("NUM_WORKERS", raising=False)

    def set_worker(worker: int, workers: int) -> None:
        info = SimpleNamespace(id=worker, num_workers=workers)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)

    return set_worker
