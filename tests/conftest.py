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


def assert_no_moments_on_masked_weights(opt_state, masks, expected_trees: int) -> None:
  """Every optimizer leaf named like a param (".../hidden_0/kernel") is 0 where masked.

  Args:
    opt_state: an optax state.
    masks: the mask pytree.
    expected_trees: how many params-shaped trees the state holds (momentum: 1,
      Adam: 2), so a state with no matching leaf cannot pass silently.
  """
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from lotto.core import masks as masks_lib  # pylint: disable=import-outside-toplevel
  mask_by_name = dict(zip(masks_lib.leaf_names(masks), jax.tree.leaves(masks)))
  checked = 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    name = masks_lib.key_path_name(path[-2:])
    if name in mask_by_name and np.shape(leaf) == mask_by_name[name].shape:
      mask = np.asarray(mask_by_name[name])
      assert not np.any(np.asarray(leaf)[~mask]), name
      checked += 1
  assert checked == expected_trees * len(mask_by_name), checked
