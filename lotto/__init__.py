"""lotto: sparse-network research on JAX (pruning at init, lottery tickets, sparse training).

The entry points a notebook needs, each `fn(config, workdir) -> results`
exactly as the `lotto` command runs them:

    import lotto
    config = lotto.get_base_config()        # or lotto.load_config("configs/test.py")
    results = lotto.run_imp(config, "/tmp/imp")
    print(lotto.write_report("/tmp/imp"))

`run_train`, `run_prune`, `run_sweep`, `run_imp`, `run_stability`,
`run_sparse_train`, `run_sparse_sweep`, `run_oneshot`, `run_job` (by `config.mode`),
`write_report`. They are imported on first use, so
`import lotto` itself loads no JAX.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ENTRY_POINTS = {
    "get_base_config": ("lotto.jobs.defaults", "get_base_config"),
    "run_job": ("lotto.jobs", "run_job"),
    "run_train": ("lotto.jobs.masked_train", "run_train"),
    "run_prune": ("lotto.jobs.prune", "run_prune"),
    "run_sweep": ("lotto.jobs.prune_sweep", "run_prune_sweep"),
    "run_imp": ("lotto.jobs.imp", "run_imp"),
    "run_stability": ("lotto.jobs.stability", "run_stability"),
    "run_sparse_train": ("lotto.jobs.sparse_train", "run_sparse_train"),
    "run_sparse_sweep": ("lotto.jobs.sparse_sweep", "run_sparse_sweep"),
    "run_oneshot": ("lotto.jobs.oneshot", "run_oneshot"),
    "write_report": ("lotto.reports", "write_report"),
}

__all__ = sorted([*_ENTRY_POINTS, "load_config"])


def load_config(path: str, argument: str | None = None):
  """The `get_config(argument)` of a config file (e.g. "configs/mnist1d_mlp.py").

  Raises:
    ConfigError: the file cannot load (missing, syntax error, failing import).
  """
  from lotto.jobs.config_files import load_config_file  # pylint: disable=import-outside-toplevel
  return load_config_file(path, argument)


def __getattr__(name: str) -> Any:
  if name in _ENTRY_POINTS:
    module, attribute = _ENTRY_POINTS[name]
    return getattr(importlib.import_module(module), attribute)
  raise AttributeError(f"module 'lotto' has no attribute {name!r}")
