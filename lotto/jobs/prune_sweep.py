"""Sweeps of pruning runs: methods x densities x ablations x pruning steps x seeds.

`config.mode = "prune_sweep"` runs every cell of the product in
`workdir/cells/<method>_d<density>_<ablation>[_at<step>]_s<seed>/` as a `prune`
job (the `_at<step>` part only for cells pruned later than initialization,
`sweep.at_steps` entries other than "0it"), through the sweep engine
(`jobs.sweep_cells`): finished cells are skipped, and with
`sweep.cells_per_program = K` up to K unfinished cells of one method, ablation
and pruning step (any densities and seeds) train together in one program.
"""
from __future__ import annotations

import itertools

import ml_collections

from lotto import reports
from lotto.core.ablations import ABLATIONS
from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError
from lotto.core.scores import SCORES
from lotto.jobs.experiment import create_experiment, job
from lotto.jobs.prune import run_prune, run_prune_cells
from lotto.jobs.sweep_cells import (Batching, SweepSettings, check_cell_names, run_sweep,
                                     sweep_settings)


def cell_name(method: str, density: float, ablation: str, seed: int, at_step: str = "0it") -> str:
  """The cell's directory name; `at_step` appears only when it is not "0it"."""
  later = "" if parse_duration(at_step, 1, "sweep.at_steps entry") == 0 else f"_at{at_step}"
  return f"{method}_d{density:g}_{ablation}{later}_s{seed}"


def cell_configs(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, prune config) of every cell; validates the sweep lists first."""
  return _cells(config, sweep_settings(config))


def _cells(config: ml_collections.ConfigDict, sweep: SweepSettings
           ) -> list[tuple[str, ml_collections.ConfigDict]]:
  for method in sweep.methods:
    SCORES.get(method)
  for ablation in sweep.ablations:
    if ablation not in ABLATIONS:
      raise ConfigError(f"unknown ablation {ablation!r} in sweep.ablations; valid choices: "
                        f"{', '.join(ABLATIONS.names())}")
  cells = []
  for method, density, ablation, at_step, seed in itertools.product(
      sweep.methods, sweep.densities, sweep.ablations, sweep.at_steps, sweep.seeds):
    cell = ml_collections.ConfigDict(config.to_dict())
    cell.mode, cell.seed = "prune", seed
    cell.prune.method, cell.prune.density, cell.prune.compression = method, density, 0.0
    cell.prune.ablation, cell.prune.at_step = ablation, at_step
    cells.append((cell_name(method, density, ablation, seed, at_step), cell))
  check_cell_names(cells, "sweep.methods, sweep.densities and sweep.ablations")
  later = [a for a in sweep.at_steps if parse_duration(a, 1, "sweep.at_steps entry") > 0]
  if not later:  # pruning at init only: nothing to check against the training length
    return cells
  exp = create_experiment(cells[0][1])  # before any cell runs: steps past the end of training
  for at_step in later:
    steps = exp.duration(at_step, "sweep.at_steps entry")
    if steps >= exp.total_steps:
      raise ConfigError(f"sweep.at_steps entry {at_step!r} ({steps} steps) is not before the "
                        f"end of training ({exp.total_steps} steps)")
  return cells


def run_cell(cell: ml_collections.ConfigDict, cell_dir: str) -> dict:
  """One prune_sweep cell (a `prune` job), as `lotto --cell=i` runs it."""
  return run_prune(cell, cell_dir, summary_line=False)


@job("prune_sweep")
def run_prune_sweep(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) every cell, then writes results.json and the report."""
  sweep = sweep_settings(config)
  batching = Batching(sweep.cells_per_program,
                      lambda c: (c.prune.method, c.prune.ablation, c.prune.at_step),
                      run_prune_cells)
  return run_sweep("prune_sweep", config, workdir, _cells(config, sweep), run_cell,
                   reports.write_prune_report, batching)
