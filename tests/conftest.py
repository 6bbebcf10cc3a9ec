"""Shared fixtures: the tiny config, a per-session MNIST-1D cache, a shared compilation cache,
and XLA:CPU at -O0 (the suite is compile-bound)."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str):
  """Loads `configs/<name>.py` and returns its get_config()."""
  spec = importlib.util.spec_from_file_location(f"config_{name}", REPO / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# Many tests build the same tiny programs (a new Trainer compiles its own jitted block);
# JAX's persistent compilation cache, shared by the xdist workers and the CLI subprocesses
# (they inherit the environment), compiles each distinct program once per test session.
# It changes no result: a cache hit is the same executable.
_COMPILE_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": None,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


# The suite is compile-bound: most tests run a few steps of programs compiled for them.
# LLVM at -O0 compiles XLA:CPU executables about twice as fast and runs them slower, which
# took the suite from 511 s to 386 s on 2 cores (BUILD_NOTES.md, "Test suite"). Every
# comparison in the suite is between runs under the same flags (subprocesses inherit them),
# and the suite passes at XLA's default level too (a level set in XLA_FLAGS is kept).
# Benchmarks and jobs run at XLA's default optimization level.
_TEST_XLA_FLAG = "--xla_backend_optimization_level=0"


# LOTTO_TEST_XLA_DEFAULT=1 leaves XLA at its default level: tests/test_optimization_level.py
# reruns the bit-identity tests so, since a claim checked only at -O0 is not checked for jobs.
XLA_DEFAULT_ENV = "LOTTO_TEST_XLA_DEFAULT"


def pytest_configure(config):
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in flags and not os.environ.get(XLA_DEFAULT_ENV):
    os.environ["XLA_FLAGS"] = f"{flags} {_TEST_XLA_FLAG}".strip()  # before JAX's CPU backend
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller; workers inherit it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lotto-test-jax-cache-")
    config.lotto_created_compile_cache = os.environ["JAX_COMPILATION_CACHE_DIR"]
  for name, value in _COMPILE_CACHE_ENV.items():
    if value is not None:
      os.environ.setdefault(name, value)
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
  created = getattr(config, "lotto_created_compile_cache", None)
  if created:  # only the process that made it, after every worker has finished
    shutil.rmtree(created, ignore_errors=True)
    del os.environ["JAX_COMPILATION_CACHE_DIR"]


@pytest.fixture(scope="session", autouse=True)
def _mnist1d_cache(tmp_path_factory):
  # One generated MNIST-1D per test session (and per xdist worker).
  os.environ.setdefault("LOTTO_CACHE", str(tmp_path_factory.mktemp("lotto_cache")))
  yield


@pytest.fixture
def tiny_config():
  return load_config("test")


@pytest.fixture(scope="session")
def lenet():
  """LeNet-300-100 at its seed-0 init: (model, params, prunable), built once per worker."""
  import jax  # pylint: disable=import-outside-toplevel
  from lotto.core import masks as masks_lib  # pylint: disable=import-outside-toplevel
  from lotto.models import create_model, init_variables  # pylint: disable=import-outside-toplevel
  model = create_model("lenet300", 10)
  params, _ = init_variables(model, jax.random.PRNGKey(0), (28, 28, 1))
  return model, params, masks_lib.select_prunable(params)


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
