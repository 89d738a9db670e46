"""Fixtures for the command-line tests: the same on-disk Kinetics scenario as tests/recipes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCENARIO_MODULE = "vidprism_tests_kinetics_scenario"
REPO_ROOT = Path(__file__).resolve().parents[2]


def load_scenario_module():
    """tests/recipes/kinetics_scenario.py, loaded by file path so it works under any pytest import mode."""
    if _SCENARIO_MODULE not in sys.modules:
        path = REPO_ROOT / "tests" / "recipes" / "kinetics_scenario.py"
        spec = importlib.util.spec_from_file_location(_SCENARIO_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_SCENARIO_MODULE] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[_SCENARIO_MODULE]


@pytest.fixture
def scenario_module():
    return load_scenario_module()


@pytest.fixture
def scenario(tmp_path, scenario_module):
    return scenario_module.write_scenario(tmp_path)


@pytest.fixture
def repo_root():
    return REPO_ROOT
