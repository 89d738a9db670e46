"""The run config train.py resolves (vidprism_ds.train.run_config): the config, the files that come with the
code, and the shard directories a run on real data needs."""

import json
from pathlib import Path

import pytest

from vidprism_ds.config import ConfigError, ExperimentConfig, load_config
from vidprism_ds.train.run_config import DEFAULT_DS_CONFIG, DEMO_CONFIG, REPO_ROOT, check_run_data, load_run_config


def _shard_dir(path: Path) -> Path:
    """A directory that looks like data_prep/shard.py's --out (the check only looks for the manifest)."""
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({}))
    return path


def test_the_run_config_is_the_demo_unless_a_file_is_given_and_eval_only_is_a_key(tmp_path):
    assert load_run_config(None) == load_config(DEMO_CONFIG)
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.001\n")
    cfg = load_run_config(str(path), ["train.seed=3"], eval_only=True)
    assert (cfg.optim.lr, cfg.train.seed, cfg.train.eval_only) == (0.001, 3, True)
    assert not load_run_config(str(path)).train.eval_only


def test_the_files_that_come_with_the_code_are_found_from_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_DS_CONFIG.is_file() and DEFAULT_DS_CONFIG.is_absolute()
    assert (REPO_ROOT / "ds_configs" / "zero2.json").samefile(DEFAULT_DS_CONFIG)  # the checkout's path still works
    assert DEMO_CONFIG.is_file() and DEMO_CONFIG.is_absolute()


def test_the_default_deepspeed_configs_are_package_data_so_an_installed_package_has_them():
    import fnmatch
    import tomllib

    import vidprism_ds

    package_dir = Path(vidprism_ds.__file__).parent
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for config in sorted(DEFAULT_DS_CONFIG.parent.glob("*.json")) or [DEFAULT_DS_CONFIG]:
        relative = config.relative_to(package_dir)  # inside the package, not beside it
        package, name = ".".join(("vidprism_ds",) + relative.parts[:1]), "/".join(relative.parts[1:])
        assert any(fnmatch.fnmatch(name, pattern) for pattern in data.get(package, [])), (config, data)


def test_a_shard_directory_must_exist_and_hold_a_manifest(tmp_path):
    cfg = ExperimentConfig()
    cfg.data.train_shards, cfg.data.val_shards = str(tmp_path / "absent"), str(_shard_dir(tmp_path / "val"))
    with pytest.raises(ConfigError, match="^data.train_shards: .*absent is not a directory"):
        check_run_data(cfg)
    (tmp_path / "half").mkdir()
    cfg.data.train_shards = str(tmp_path / "half")
    with pytest.raises(ConfigError, match="^data.train_shards: .*half has no manifest.json"):
        check_run_data(cfg)
    cfg.data.train_shards = str(_shard_dir(tmp_path / "train"))
    check_run_data(cfg)
    cfg.data.train_shards, cfg.train.eval_only = "", True
    check_run_data(cfg)
