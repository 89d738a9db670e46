"""``python data_prep/fewshot.py`` run as users run it: a subprocess from the repository root."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = "data_prep/fewshot.py"
CLASS_SIZES = (6, 3, 5)


def run_cli(repo_root, *args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)


def write_training_list(path):
    lines = [f"videos/class {c}/clip {i}.avi {c}\n" for c, size in enumerate(CLASS_SIZES) for i in range(size)]
    path.write_text("# a comment line is skipped\n" + "".join(reversed(lines)))
    return path


def test_draws_k_per_class_reproducibly(repo_root, tmp_path):
    train = write_training_list(tmp_path / "train.txt")
    outputs = []
    for name in ("a.txt", "b.txt"):
        done = run_cli(repo_root, "--list", train, "--shots", 3, "--seed", 5, "--out", tmp_path / name)
        assert done.returncode == 0, done.stderr
        assert "wrote 9 videos (3 classes x 3 shots, seed 5)" in done.stdout
        outputs.append((tmp_path / name).read_text())
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3
    assert all(line.startswith("videos/class ") for line in lines)  # paths with spaces kept whole


def test_too_many_shots_refused_naming_the_class(repo_root, tmp_path):
    train = write_training_list(tmp_path / "train.txt")
    done = run_cli(repo_root, "--list", train, "--shots", 4, "--out", tmp_path / "out.txt")
    assert done.returncode == 2
    assert done.stderr == "fewshot: error: --shots 4 is more than class 1 has (3 videos)\n"
    assert not (tmp_path / "out.txt").exists()


def test_packaged_labels_name_absent_classes(repo_root, tmp_path):
    train = write_training_list(tmp_path / "train.txt")
    done = run_cli(repo_root, "--list", train, "--shots", 2, "--labels", "hmdb51", "--out", tmp_path / "out.txt")
    assert done.returncode == 2
    assert "class 3 ('chew') has (0 videos); 47 other class(es)" in done.stderr


def test_malformed_list_is_a_one_line_error(repo_root, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("videos/a.mp4 0\nvideos/b.mp4 label\n")
    done = run_cli(repo_root, "--list", bad, "--shots", 1, "--out", tmp_path / "out.txt")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"{bad}:2: expected 'relative/path label'" in done.stderr
