"""``python data_prep/shard.py`` end to end: real codecs, broken files, kill + resume, bad arguments."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from vidprism_ds.data.generated_videos import write_video
from vidprism_ds.data.prep.cli import main
from vidprism_ds.data.synthetic import render_video

SAFE_MEMBER = re.compile(r"^\d{9}\.(\d{6}\.jpg|json|cls)$")


def _tar_listing(path):
    result = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def _write_audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_codecs_and_shapes_are_kept_and_broken_inputs_are_skipped_with_reasons(tmp_path, helpers):
    clip = render_video(("codec", 0), 0, 64, 12)  # (decord 0.6 cannot decode 48-pixel-wide frames)
    rng = np.random.default_rng(0)
    good = {
        "h264.mp4": lambda p: write_video(p, clip),
        "mpeg4.avi": lambda p: write_video(p, clip, codec="mpeg4"),
        "portrait.mp4": lambda p: write_video(p, rng.integers(0, 255, (10, 120, 64, 3), dtype=np.uint8)),
        "odd size.mp4": lambda p: write_video(p, rng.integers(0, 255, (10, 47, 65, 3), dtype=np.uint8),
                                              pix_fmt="yuv444p"),
    }
    if "libvpx-vp9" in av.codecs_available:
        good["vp9.webm"] = lambda p: write_video(p, clip, codec="libvpx-vp9")
    else:
        print("libvpx-vp9 not in this PyAV build: the vp9/webm case is not exercised")
    for name, make in good.items():
        make(tmp_path / name)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    whole = (tmp_path / "h264.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    _write_audio_only(tmp_path / "audio.mp4")
    broken = ["empty.mp4", "text.mp4", "truncated.mp4", "missing.mp4", "audio.mp4"]
    names = list(good)[:2] + broken[:3] + list(good)[2:] + broken[3:]
    helpers.write_list(tmp_path / "list.txt", [(n, i % 4) for i, n in enumerate(names)])

    result = helpers.run_shard_cli("--root", str(tmp_path), "--list", str(tmp_path / "list.txt"), "--out",
                           str(tmp_path / "out"), "--shard-size", "4", "--short-side", "32", "--workers", "2",
                           "--dataset", "synthetic")
    assert result.returncode == 0, result.stderr
    assert f"wrote {len(good)} of {len(names)} videos" in result.stdout
    assert "skipped 5" in result.stdout

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["num_samples"] == len(good)
    skipped = {os.path.basename(item["path"]): item["reason"] for item in manifest["skipped"]}
    assert sorted(skipped) == sorted(broken)
    assert skipped["empty.mp4"] == "empty file"
    assert skipped["missing.mp4"] == "missing file"
    assert skipped["audio.mp4"].startswith("no video stream")
    assert skipped["text.mp4"].startswith("cannot open as video")

    samples = {}
    for shard in manifest["shards"]:
        path = tmp_path / "out" / shard["name"]
        listing = _tar_listing(path)
        assert all(SAFE_MEMBER.match(m) for m in listing), listing
        for sample in wds.DataPipeline(wds.SimpleShardList([str(path)]), wds.tarfile_to_samples()):
            meta = json.loads(sample["json"])
            samples[os.path.basename(meta["video_id"])] = (sample, meta)
        assert len({m.split(".")[0] for m in listing}) == shard["samples"]
    assert sorted(samples) == sorted(good)
    for name, (sample, meta) in samples.items():
        frames = sorted(k for k in sample if k.endswith(".jpg"))
        assert len(frames) == meta["num_frames"] == len(meta["frame_indices"]) > 0
        assert int(sample["cls"]) == meta["label"] == names.index(name) % 4
        image = Image.open(io.BytesIO(sample[frames[0]]))
        assert (image.width, image.height) == (meta["width"], meta["height"])
        assert min(image.size) == min(32, meta["source_width"], meta["source_height"])
    portrait = samples["portrait.mp4"][1]
    assert (portrait["source_width"], portrait["source_height"]) == (64, 120)
    assert (portrait["width"], portrait["height"]) == (32, 60)
    assert (samples["odd size.mp4"][1]["source_width"], samples["odd size.mp4"][1]["source_height"]) == (65, 47)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_shards_as_an_uninterrupted_run(tmp_path, helpers):
    rows = helpers.write_synthetic_videos(tmp_path, 24, size=96, frames=40)
    helpers.write_list(tmp_path / "list.txt", rows)
    # a 16-frame base of 40 frames: the default bursts add frames of their own (multi-rate samples)
    common = ["--root", str(tmp_path), "--list", str(tmp_path / "list.txt"), "--shard-size", "2", "--workers", "1",
              "--dataset", "synthetic", "--no-progress", "--max-frames", "16"]
    reference = helpers.run_shard_cli(*common, "--out", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(helpers.shard_script), *common, "--out", str(out)],
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("shard-*.tar"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)  # the parent and its decoder worker, no clean-up
    process.wait(timeout=30)
    finished_at_kill = sorted(p.name for p in out.glob("shard-*.tar"))
    assert 2 <= len(finished_at_kill) < 12 and not (out / "manifest.json").exists(), "the run was not cut midway"

    resumed = helpers.run_shard_cli(*common, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"({len(finished_at_kill)} kept from an earlier run)" in resumed.stdout
    assert not list(out.glob(".*.partial"))
    reference_tars = sorted((tmp_path / "reference").glob("*.tar"))
    assert [p.name for p in reference_tars] == sorted(p.name for p in out.glob("*.tar"))
    keys = []
    for ref in reference_tars:
        listing = _tar_listing(out / ref.name)
        assert listing == _tar_listing(ref)
        assert (out / ref.name).read_bytes() == ref.read_bytes()  # byte-identical shards
        keys += sorted({m.split(".")[0] for m in listing})
    assert len(keys) == len(set(keys)) == 24  # nothing lost, nothing duplicated
    ref_manifest = json.loads((tmp_path / "reference" / "manifest.json").read_text())
    new_manifest = json.loads((out / "manifest.json").read_text())
    assert new_manifest["shards"] == ref_manifest["shards"]


def _run_main(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def test_bad_arguments_exit_non_zero_with_one_clear_line(tmp_path, capsys, helpers):
    helpers.write_list(tmp_path / "list.txt", [("a.mp4", 0)])
    base = ["--root", str(tmp_path), "--list", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out"),
            "--no-progress"]
    cases = [
        (["--root", str(tmp_path / "nowhere"), "--list", str(tmp_path / "list.txt"), "--out", str(tmp_path / "o")],
         "--root"),
        (["--root", str(tmp_path), "--list", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")],
         "list file not found"),
        ([*base, "--jpeg-quality", "0"], "--jpeg-quality"),
        ([*base, "--workers", "0"], "--workers"),
        ([*base, "--burst-count", "-1"], "--burst-count must be >= 0"),
        ([*base, "--burst-length", "0"], "--burst-length must be >= 1"),
        ([*base, "--labels", str(tmp_path / "nope.txt")], "--labels"),
    ]
    for args, expected in cases:
        code, err = _run_main(capsys, *args)
        assert code == 2 and err.startswith("shard.py: error:") and expected in err and "\n" not in err, (args, err)
    (tmp_path / "bad.txt").write_text("a.mp4 0\nno label here\n")
    code, err = _run_main(capsys, "--root", str(tmp_path), "--list", str(tmp_path / "bad.txt"), "--out",
                          str(tmp_path / "o"))
    assert code == 2 and "bad.txt:2" in err
    (tmp_path / "unreadable.txt").write_bytes(b"\xff\xfe\x00bad")
    code, err = _run_main(capsys, "--root", str(tmp_path), "--list", str(tmp_path / "unreadable.txt"), "--out",
                          str(tmp_path / "o"))
    assert code == 2 and "cannot read list" in err
    # every video missing: nothing could be written, which is an error too (most likely a wrong --root)
    code, err = _run_main(capsys, *base)
    assert code == 2 and "no video could be written" in err


def test_the_script_itself_reports_usage_errors(tmp_path, helpers):
    result = helpers.run_shard_cli("--root", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "--list" in result.stderr
    result = helpers.run_shard_cli("--root", str(tmp_path / "x"), "--list", "l.txt", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"shard.py: error: --root {tmp_path / 'x'}: not a directory"]


def test_repeated_rows_are_written_with_one_warning_and_a_link_loop_is_named(tmp_path, helpers):
    rows = helpers.write_synthetic_videos(tmp_path, 3)
    os.symlink("loop_b.mp4", tmp_path / "loop_a.mp4")
    os.symlink("loop_a.mp4", tmp_path / "loop_b.mp4")
    listed = rows + [rows[0], ("loop_a.mp4", 0), rows[1], rows[0]]
    helpers.write_list(tmp_path / "list.txt", listed)
    result = helpers.run_shard_cli("--root", str(tmp_path), "--list", str(tmp_path / "list.txt"), "--out",
                                   str(tmp_path / "out"), "--workers", "1", "--dataset", "synthetic")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"shard.py: warning: 3 list rows repeat a path listed earlier, written again as a sample "
                        f"of its own: {tmp_path / rows[0][0]} (lines 1, 4, 7); {tmp_path / rows[1][0]} (lines 2, 6)"]
    # every row keeps its place: the repeats are samples of their own, the loop is skipped and named
    assert "wrote 6 of 7 videos" in result.stdout
    assert "1 symlink loop (too many levels of symbolic links)" in result.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(s["line"], s["reason"]) for s in manifest["skipped"]] == [
        (5, "symlink loop (too many levels of symbolic links)")]


def _unwritable_out(tmp_path, case):
    """(--out, the error line's tail) for an --out that cannot be created or written."""
    if case == "under a file":
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "shards"
        return out, f"--out {out}: cannot create it, {tmp_path / 'a_file'} is not a directory"
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    try:
        (read_only / "probe").touch()
        writable = True
    except PermissionError:
        writable = False
    if writable:
        pytest.skip("this user writes into read-only folders (root with CAP_DAC_OVERRIDE)")
    if case == "in a read-only folder":
        out = read_only / "shards"
        return out, f"--out {out}: cannot create it in {read_only} (Permission denied)"
    return read_only, f"--out {read_only}: cannot write in it (Permission denied)"


@pytest.mark.parametrize("case", ["under a file", "in a read-only folder", "a read-only folder"])
def test_unwritable_out_is_one_line_before_any_worker_starts(tmp_path, capsys, helpers, monkeypatch, case):
    rows = helpers.write_synthetic_videos(tmp_path, 1)
    helpers.write_list(tmp_path / "list.txt", rows)
    out, message = _unwritable_out(tmp_path, case)

    def no_workers(*args, **kwargs):
        raise AssertionError("a decoder worker was started")

    monkeypatch.setattr("vidprism_ds.data.prep.run.IsolatedProcessPool", no_workers)
    code, err = _run_main(capsys, "--root", str(tmp_path), "--list", str(tmp_path / "list.txt"), "--out", str(out),
                          "--dataset", "synthetic", "--no-progress")
    assert (code, err) == (2, f"shard.py: error: {message}")
    assert not (out / "reports").exists()


def test_help_lists_the_burst_options_with_their_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--burst-count BURST_COUNT dense bursts per video" in text and "default 2)" in text
    assert "--burst-length BURST_LENGTH frames per burst (default 16)" in text
    assert "--burst-fps BURST_FPS" in text
