"""Jobs: the config edge. `config.mode` names one; `run_job(config, workdir)` runs it.

The only package that reads a ConfigDict: `defaults` (the base config),
`experiment` (data, model, optimizer and schedule from a config, as typed
fields), and one module per mode (`train`, `prune`, `sweep`, `imp` with its
`branches`, `stability`). Each job module is imported when its mode runs, so
`from lotto.jobs import defaults` (what config files do) stays light.
"""
from __future__ import annotations

import importlib
from typing import Callable

import ml_collections

from lotto.core.registry import Registry

Job = Callable[[ml_collections.ConfigDict, str], dict]
JOBS: Registry[tuple[str, str]] = Registry("mode")
JOBS.register("train", ("lotto.jobs.train", "run_train"))
JOBS.register("prune", ("lotto.jobs.prune", "run_prune"))
JOBS.register("prune_sweep", ("lotto.jobs.sweep", "run_prune_sweep"))
JOBS.register("imp", ("lotto.jobs.imp", "run_imp"))
JOBS.register("stability", ("lotto.jobs.stability", "run_stability"))


def job_function(mode: str) -> Job:
  """The function that runs `mode` (imported on first use).

  Raises:
    ConfigError: unknown mode, listing the valid ones.
  """
  module, name = JOBS.get(mode)
  return getattr(importlib.import_module(module), name)


def run_job(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the job named by `config.mode` on `workdir`; returns its results dict.

  Raises:
    ConfigError: unknown mode (listing the valid ones) or any invalid field.
  """
  return job_function(config.mode)(config, workdir)
