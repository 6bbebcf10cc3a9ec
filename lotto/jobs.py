"""The jobs `config.mode` selects, as a registry of `fn(config, workdir) -> results`."""
from __future__ import annotations

from typing import Callable

import ml_collections

from lotto.registry import Registry

Job = Callable[[ml_collections.ConfigDict, str], dict]
JOBS: Registry[Job] = Registry("mode")


def _train(config, workdir):
  from lotto.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  return train_and_evaluate(config, workdir)


def _prune(config, workdir):
  from lotto.pai import run_prune  # pylint: disable=import-outside-toplevel
  return run_prune(config, workdir)


def _prune_sweep(config, workdir):
  from lotto.sweeps import run_prune_sweep  # pylint: disable=import-outside-toplevel
  return run_prune_sweep(config, workdir)


def _imp(config, workdir):
  from lotto.imp import run_imp  # pylint: disable=import-outside-toplevel
  return run_imp(config, workdir)


def _stability(config, workdir):
  from lotto.stability import run_stability  # pylint: disable=import-outside-toplevel
  return run_stability(config, workdir)


JOBS.register("train", _train)
JOBS.register("imp", _imp)
JOBS.register("stability", _stability)
JOBS.register("prune_sweep", _prune_sweep)
JOBS.register("prune", _prune)


def run_job(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the job named by `config.mode` on `workdir`.

  Raises:
    ConfigError: unknown mode (listing the valid ones) or any invalid field.
  """
  return JOBS.get(config.mode)(config, workdir)
