"""``python data_prep/build_k710.py`` run as users run it: a subprocess from the repository root."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = "data_prep/build_k710.py"


def run_cli(repo_root, *args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)


def scenario_args(folders, root, out_dir):
    return ["--k400", folders["k400"], "--k600", folders["k600"], "--k700", folders["k700"],
            "--video-root", root, "--out-dir", out_dir]


def test_writes_lists_missing_and_summary(repo_root, scenario, scenario_module, tmp_path):
    folders, root = scenario
    out = tmp_path / "out"
    done = run_cli(repo_root, *scenario_args(folders, root, out))
    assert done.returncode == 0, done.stderr

    train = (out / "k710_train.txt").read_text().splitlines()
    val = (out / "k710_val.txt").read_text().splitlines()
    assert len(train) == 9 and len(val) == 4
    assert "k400/train/balloon blowing/yt_A9_000010_000020.mp4 12" in train  # a path with a space
    assert "k600/train/yt_A2_000010_000020.mp4 12" in train

    missing = (out / "k710_missing.tsv").read_text().splitlines()
    assert missing[0] == "dataset\tsplit\tyoutube_id\tpath"
    assert {tuple(line.split("\t")[:3]) for line in missing[1:]} == scenario_module.EXPECTED_MISSING

    summary = json.loads((out / "k710_summary.json").read_text())
    for split, per_dataset in scenario_module.EXPECTED_COUNTS.items():
        for dataset, counts in per_dataset.items():
            assert summary["counts"][split][dataset] == counts
    assert summary["counts"]["train"]["total"] == {"rows": 18, "kept": 9, "duplicates": 4, "leaks": 3,
                                                   "missing": 2, "unknown_label": 0}
    assert summary["written"] == {"train": 9, "val": 4}
    assert [c["youtube_id"] for c in summary["conflicts"]] == ["yt_A7"]

    printed = done.stdout.splitlines()
    assert any(line.split() == ["train", "total", "18", "9", "4", "3", "2", "0"] for line in printed), done.stdout
    assert any(line.split() == ["val", "total", "6", "4", "1", "0", "1", "0"] for line in printed), done.stdout
    assert "label conflicts: 1" in done.stdout


def test_options_reach_the_build(repo_root, scenario, tmp_path):
    folders, root = scenario
    out = tmp_path / "out"
    done = run_cli(repo_root, *scenario_args(folders, root, out), "--precedence", "k400,k600,k700",
                   "--layout", "nested", "--subdir", "k600=k400", "--subdir", "k700=k400")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "k710_summary.json").read_text())
    assert summary["precedence"] == ["k400", "k600", "k700"]
    assert {d: (v["layout"], v["subdir"]) for d, v in summary["layouts"].items()} == {
        "k400": ("nested", "k400"), "k600": ("nested", "k400"), "k700": ("nested", "k400")}
    # Everything is looked for in the K400 tree: K400 copies win (precedence) and are found.
    assert "k400/train/drinking/yt_A7_000010_000020.mp4 100" in (out / "k710_train.txt").read_text()


def test_bad_input_exits_non_zero_with_one_line(repo_root, scenario, tmp_path):
    folders, root = scenario
    cases = [
        (["--subdir", "k900=x"], "--subdir 'k900=x'"),
        (["--layout", "{nope}.mp4"], "not a preset"),
        (["--precedence", "k400,k600"], "must name each of"),
    ]
    for extra, message in cases:
        done = run_cli(repo_root, *scenario_args(folders, root, tmp_path / "out"), *extra)
        assert done.returncode == 2, (extra, done.stdout)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert done.stderr.startswith("build_k710: error: ")
    absent = run_cli(repo_root, *scenario_args(folders, tmp_path / "no_such_root", tmp_path / "out"))
    assert absent.returncode == 2 and "is not a folder" in absent.stderr
    assert not (tmp_path / "out").exists()  # nothing written on failure


def test_totals_beside_the_published_sizes_and_empty_classes(repo_root, scenario, tmp_path):
    folders, root = scenario
    out = tmp_path / "out"
    done = run_cli(repo_root, *scenario_args(folders, root, out))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert f"train: 9 videos (published K710 train: 658,340; 0.0% of it) -> {out / 'k710_train.txt'}" in printed
    assert f"val: 4 videos (published K710 val: 66,803; 0.0% of it) -> {out / 'k710_val.txt'}" in printed
    assert any(line.startswith("warning: train leaves 704 of 710 K710 classes without a video") for line in printed)
    summary = json.loads((out / "k710_summary.json").read_text())
    assert summary["published"] == {"train": 658340, "val": 66803}
    assert (len(summary["empty_classes"]["train"]), len(summary["empty_classes"]["val"])) == (704, 708)
    assert 0 not in summary["empty_classes"]["val"] and 2 in summary["empty_classes"]["val"]


def test_a_byte_order_mark_does_not_hide_the_label_column(repo_root, scenario, tmp_path):
    folders, root = scenario
    csv_path = folders["k600"] / "validate.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())  # Excel's "CSV UTF-8"
    done = run_cli(repo_root, *scenario_args(folders, root, tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert any(line.split() == ["val", "k600", "2", "2", "0", "0", "0", "0"] for line in done.stdout.splitlines())
