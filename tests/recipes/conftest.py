"""Fixtures for the recipe tests: the on-disk Kinetics scenario of kinetics_scenario.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_SCENARIO_MODULE = "vidprism_tests_kinetics_scenario"


def load_scenario_module():
    """kinetics_scenario.py, loaded by file path so it works under any pytest import mode."""
    if _SCENARIO_MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(_SCENARIO_MODULE, Path(__file__).with_name("kinetics_scenario.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[_SCENARIO_MODULE] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[_SCENARIO_MODULE]


@pytest.fixture
def scenario_module():
    return load_scenario_module()


@pytest.fixture
def scenario(tmp_path, scenario_module):
    """(csv folders by dataset, video root) of the standard scenario."""
    return scenario_module.write_scenario(tmp_path)
