"""Sweeps of sparse_train runs: methods x densities x seeds (`config.mode = "sparse_sweep"`).

Each cell runs in `workdir/cells/<method>_d<density>_s<seed>/` as a
`sparse_train` job with `sparse.method`, `sparse.density` and `seed` set from
`sweep.methods`, `sweep.densities` and `sweep.seeds`; everything else comes
from the config. Every cell's settings are validated before the first one
runs. A finished cell is skipped, so a killed sweep re-run with the same
command continues (a half-done cell resumes from its checkpoint). The
sweep's results.json lists every cell; the report (accuracy vs density per
method, the density schedules) is written at the end. `sweep.cells_per_program
= K` trains up to K unfinished cells of one method and density (their seeds)
together in one compiled program.
"""
from __future__ import annotations

import itertools

import ml_collections

from lotto import reports
from lotto.core.errors import ConfigError
from lotto.dynamic.methods import SPARSE_METHODS
from lotto.jobs.experiment import create_experiment, job
from lotto.jobs.sparse_settings import sparse_settings
from lotto.jobs.sparse_train import run_sparse_train, run_sparse_train_cells
from lotto.jobs.sweep_cells import (Batching, SweepSettings, check_cell_names, run_sweep,
                                     sweep_settings)


def sparse_cells(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, sparse_train config) of every cell, each validated.

  Raises:
    ConfigError: a list that is not a tuple, an unknown method, a bad density or seed,
      no cells, two cells sharing a directory, or any cell whose `sparse` settings are
      invalid.
  """
  return _cells(config, sweep_settings(config))


def _cells(config: ml_collections.ConfigDict, sweep: SweepSettings
           ) -> list[tuple[str, ml_collections.ConfigDict]]:
  for method in sweep.methods:
    if method not in SPARSE_METHODS:
      raise ConfigError(f"unknown sparse method {method!r} in sweep.methods; valid choices: "
                        f"{', '.join(SPARSE_METHODS.names())}")
  cells = []
  for method, density, seed in itertools.product(sweep.methods, sweep.densities, sweep.seeds):
    cell = ml_collections.ConfigDict(config.to_dict())
    cell.mode, cell.seed = "sparse_train", seed
    cell.sparse.method, cell.sparse.density, cell.sparse.compression = method, density, 0.0
    cells.append((f"{method}_d{density:g}_s{seed}", cell))
  check_cell_names(cells, "sweep.methods and sweep.densities")
  exp = create_experiment(cells[0][1])
  for _, cell in cells:
    sparse_settings(cell, exp)
  return cells


def run_cell(cell: ml_collections.ConfigDict, cell_dir: str) -> dict:
  """One sparse_sweep cell (a `sparse_train` job), as `lotto --cell=i` runs it."""
  return run_sparse_train(cell, cell_dir, summary_line=False)


@job("sparse_sweep")
def run_sparse_sweep(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) every cell, then writes results.json and the report."""
  sweep = sweep_settings(config)
  batching = Batching(sweep.cells_per_program, lambda c: (c.sparse.method, c.sparse.density),
                      run_sparse_train_cells)
  return run_sweep("sparse_sweep", config, workdir, _cells(config, sweep), run_cell,
                   reports.write_report, batching)
