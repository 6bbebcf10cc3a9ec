"""Shared fixtures: the tiny config, and a per-session MNIST-1D cache."""
from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
  """Loads `configs/<name>.py` and returns its get_config()."""
  spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture(scope="session", autouse=True)
def _mnist1d_cache(tmp_path_factory):
  # One generated MNIST-1D per test session (and per xdist worker).
  os.environ.setdefault("LOTTO_CACHE", str(tmp_path_factory.mktemp("lotto_cache")))
  yield


@pytest.fixture
def tiny_config():
  return load_config("test")
