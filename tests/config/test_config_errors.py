"""What train.py says about a config it cannot run (issue 13): one line, exit code 2, never a traceback.

YAML that does not parse, a --set value that is not YAML, numbers that are not finite, a run on real
data without shards, and a custom dataset that does not say whether it may be flipped.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vidprism_ds.config import ConfigError, ExperimentConfig, load_config, validate
from vidprism_ds.train.cli import EXIT_CONFIG, main
from vidprism_ds.train.run_config import DEMO_CONFIG

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _config_error_line(capsys, argv) -> str:
    """Run train.py's main; it must exit 2 and print exactly one line on stderr."""
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("config error: "), err
    return err.strip()


# ---------------------------------------------------------------------------------------------- YAML syntax


@pytest.mark.parametrize("text, where, problem", [
    ("optim:\n  lr: [1,\n", "3:1", "expected the node content"),
    ("optim:\n\tlr: 1\n", "2:1", "YAML indents with spaces, not tabs"),
    ("optim:\n  lr: 1\n    warmup_steps: 2\n", "3:17", "mapping values are not allowed here"),
    ("logging:\n  run_name: \"abc\n", "3:1", "while scanning a quoted scalar at 2:13"),
])
def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path, capsys, text, where, problem):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:{where}: ")
    assert problem in str(err.value) and "\n" not in str(err.value)
    line = _config_error_line(capsys, ["--config", str(path)])
    assert line.startswith(f"config error: {path}:{where}: ")


def test_a_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"optim:\n  lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read it as a UTF-8 YAML file"):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("optim.lr=[1,", "optim.lr"),
    ("model.head.sampling_rates={", "model.head.sampling_rates"),
    ("logging.run_name='abc", "logging.run_name"),
])
def test_a_set_value_that_is_not_yaml_names_the_override_and_the_key(capsys, override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).startswith(f"{key}: the value of --set {override!r} is not valid YAML at 1:")
    _config_error_line(capsys, ["--set", override])


def test_train_py_itself_exits_2_with_one_line(tmp_path):
    """The whole chain as a user runs it: train.py's exit code and nothing but the one line."""
    path = _write(tmp_path, "optim:\n\tlr: 1\n")
    done = subprocess.run([sys.executable, "train.py", "--config", str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"config error: {path}:2:1: found character '\\t' that cannot start any "
                                        "token (while scanning for the next token); YAML indents with spaces, "
                                        "not tabs"]


# ---------------------------------------------------------------------------------------------- non-finite numbers


@pytest.mark.parametrize("override, key", [
    ("optim.lr=.inf", "optim.lr"),
    ("optim.lr=-.inf", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"),
    ("optim.lr=1.0e+400", "optim.lr"),  # overflows to inf while parsing
    ("optim.betas=[0.9, .NaN]", "optim.betas[1]"),
    ("model.head.router_capacity_factor=.inf", "model.head.router_capacity_factor"),  # Optional[float]
    ("model.loss.rank=.inf", "model.loss.rank"),
    ("train.memory_limit_fraction=.nan", "train.memory_limit_fraction"),
])
def test_non_finite_numbers_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be a finite number"):
        load_config(overrides=[override])


def test_non_finite_numbers_in_yaml_are_refused(tmp_path, capsys):
    path = _write(tmp_path, "optim:\n  weight_decay: .inf\n")
    with pytest.raises(ConfigError, match="^optim.weight_decay: must be a finite number, got inf"):
        load_config(path)
    assert "optim.weight_decay" in _config_error_line(capsys, ["--config", str(path)])


def test_validate_refuses_non_finite_numbers_set_in_code():
    cfg = ExperimentConfig()
    cfg.optim.eps = math.nan
    with pytest.raises(ConfigError, match="^optim.eps: must be a finite number"):
        validate(cfg)


def test_an_integer_too_large_for_a_float_is_a_config_error():
    with pytest.raises(ConfigError, match="^optim.lr: an integer of 401 digits is too large"):
        load_config(overrides=["optim.lr=1" + "0" * 400])


def test_the_string_nan_stays_a_string():
    """YAML spells the special floats .nan/.inf; plain nan is a string, refused as the wrong type."""
    with pytest.raises(ConfigError, match="^optim.lr: expected a number, got 'nan'"):
        load_config(overrides=["optim.lr=nan"])


# ---------------------------------------------------------------------------------------------- runs without data


def test_an_empty_yaml_is_the_defaults_not_the_demo(tmp_path):
    assert load_config(_write(tmp_path, "")) == ExperimentConfig()
    assert load_config(_write(tmp_path, "", "e.yaml")) != load_config(DEMO_CONFIG)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "optim:\n  lr: 0.001\n"])
def test_a_config_without_shards_fails_at_start_naming_train_shards(tmp_path, capsys, text):
    line = _config_error_line(capsys, ["--config", str(_write(tmp_path, text))])
    assert line.startswith("config error: data.train_shards: is empty")


def test_eval_only_needs_the_validation_shards_only(tmp_path, capsys):
    path = _write(tmp_path, "")
    assert "data.val_shards: is empty" in _config_error_line(capsys, ["--config", str(path), "--eval-only"])


def test_the_demo_is_not_asked_for_shards(tmp_path, capsys):
    """Without --config the demo makes its shards itself: the next check (the DeepSpeed JSON) is reached."""
    absent = tmp_path / "absent.json"
    line = _config_error_line(capsys, ["--deepspeed_config", str(absent)])
    assert line == f"config error: --deepspeed_config: {absent} does not exist"
    # the same arguments with a config file stop at the shards first
    line = _config_error_line(capsys, ["--config", str(DEMO_CONFIG), "--deepspeed_config", str(absent)])
    assert "data.train_shards" in line


# ---------------------------------------------------------------------------------------------- horizontal flips


def test_a_custom_dataset_must_say_whether_it_may_be_flipped(tmp_path, capsys):
    custom = ["data.dataset=custom", "data.labels=labels.txt"]
    with pytest.raises(ConfigError, match="^data.hflip: dataset 'custom' needs an explicit true or false"):
        load_config(overrides=custom)
    assert load_config(overrides=custom + ["data.hflip=false"]).data.hflip is False
    assert load_config(overrides=custom + ["data.hflip=true"]).data.hflip is True
    empty = _write(tmp_path, "")
    line = _config_error_line(capsys, ["--config", str(empty), "--set", custom[0], "--set", custom[1]])
    assert line.startswith("config error: data.hflip: ")


def test_null_hflip_loads_from_yaml(tmp_path):
    path = _write(tmp_path, "data:\n  dataset: k400\n  hflip: null\n")
    assert load_config(path).data.hflip is None
