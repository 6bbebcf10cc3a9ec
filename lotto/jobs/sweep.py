"""Sweeps of pruning runs: methods x densities x ablations x pruning steps x seeds.

`config.mode = "prune_sweep"` runs every cell of the product in
`workdir/cells/<method>_d<density>_<ablation>[_at<step>]_s<seed>/` as a `prune`
job (the `_at<step>` part only for cells pruned later than initialization,
`sweep.at_steps` entries other than "0it").
A cell whose results.json exists is skipped, so a killed sweep re-run with the
same command continues where it stopped (a half-done cell resumes from its
checkpoint). The sweep's results.json lists every cell; the report table and
plots are written at the end.

`sweep.cells_per_program = K` (> 1) trains up to K unfinished cells of one
method, ablation and pruning step (any densities and seeds) together, as a
population in one compiled program; each cell's directory still gets exactly
what the cell run alone writes (equal within float rounding, see
`jobs.replicas`).
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Callable

import ml_collections

from lotto import reports
from lotto.core import masks as masks_lib
from lotto.core.ablations import ABLATIONS
from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError
from lotto.core.scores import SCORES
from lotto.jobs.defaults import LEGACY_FIELDS
from lotto.jobs.experiment import (canonical_config, check_seed, create_experiment, job,
                                   population_seeds)
from lotto.jobs.prune import run_prune, run_prune_cells
from lotto.runtime import files, runs
from lotto.runtime.devices import note
from lotto.runtime.metrics import format_seconds


def cell_name(method: str, density: float, ablation: str, seed: int, at_step: str = "0it") -> str:
  """The cell's directory name; `at_step` appears only when it is not "0it"."""
  later = "" if parse_duration(at_step, 1, "sweep.at_steps entry") == 0 else f"_at{at_step}"
  return f"{method}_d{density:g}_{ablation}{later}_s{seed}"


def cell_configs(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
  """(name, prune config) of every cell; validates the sweep lists first."""
  population_seeds(config)  # refuses `seeds`: a sweep has sweep.seeds
  cells_per_program(config)
  sweep = config.sweep
  for field in ("methods", "densities", "ablations", "at_steps", "seeds"):
    if isinstance(sweep[field], str) or not isinstance(sweep[field], (tuple, list)):
      raise ConfigError(f"sweep.{field} must be a tuple, e.g. sweep.{field}=("
                        f"{sweep[field]!r},); got {sweep[field]!r}")
  for method in sweep.methods:
    SCORES.get(method)
  for density in sweep.densities:
    masks_lib.check_density(density, "sweep.densities entry")
  for ablation in sweep.ablations:
    if ablation not in ABLATIONS:
      raise ConfigError(f"unknown ablation {ablation!r} in sweep.ablations; valid choices: "
                        f"{', '.join(ABLATIONS.names())}")
  if not sweep.seeds:
    raise ConfigError(f"sweep.seeds must be a non-empty list of integers; got {sweep.seeds!r}")
  for seed in sweep.seeds:
    check_seed(seed, "sweep.seeds entry")
  if not sweep.at_steps:
    raise ConfigError("sweep.at_steps must list at least one duration, e.g. ('0it', '100it')")
  cells = []
  for method, density, ablation, at_step, seed in itertools.product(
      sweep.methods, sweep.densities, sweep.ablations, sweep.at_steps, sweep.seeds):
    cell = ml_collections.ConfigDict(config.to_dict())
    cell.mode, cell.seed = "prune", seed
    cell.prune.method, cell.prune.density, cell.prune.compression = method, density, 0.0
    cell.prune.ablation, cell.prune.at_step = ablation, at_step
    cells.append((cell_name(method, density, ablation, seed, at_step), cell))
  if not cells:
    raise ConfigError("the sweep has no cells: sweep.methods, sweep.densities and "
                      "sweep.ablations must each list at least one value")
  names = [name for name, _ in cells]
  twice = sorted({name for name in names if names.count(name) > 1})
  if twice:
    raise ConfigError(f"sweep cells would share a directory ({twice[0]}): a value is listed "
                      "twice, or two densities agree to 6 significant digits")
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


@dataclasses.dataclass(frozen=True)
class Batching:
  """How a sweep trains cells of equal shapes together (`sweep.cells_per_program`).

  Attributes:
    size: at most this many cells per compiled program (1: each cell alone).
    key: cells whose keys are equal may share a program (e.g. same method).
    run: trains [(cell config, cell dir)] in one program; returns each cell's results.
  """
  size: int
  key: Callable[[ml_collections.ConfigDict], tuple]
  run: Callable[[list[tuple[ml_collections.ConfigDict, str]]], list[dict]]


def cells_per_program(config: ml_collections.ConfigDict) -> int:
  """The validated `sweep.cells_per_program`.

  Raises:
    ConfigError: not a positive integer.
  """
  size = config.sweep.get("cells_per_program", 1)
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ConfigError(f"sweep.cells_per_program must be a positive integer (1: each cell in "
                      f"its own program); got {size!r}")
  return size


def _groups(pending: list[int], cells, batching: Batching | None) -> list[list[int]]:
  """The pending cells' indices in groups that train together, in sweep order."""
  if batching is None or batching.size == 1:
    return [[index] for index in pending]
  by_key: dict[tuple, list[int]] = {}
  for index in pending:
    by_key.setdefault(batching.key(cells[index][1]), []).append(index)
  groups = [members[start:start + batching.size] for members in by_key.values()
            for start in range(0, len(members), batching.size)]
  return sorted(groups)


def run_cells(mode: str, workdir: str, cells: list[tuple[str, ml_collections.ConfigDict]],
              run_cell: Callable[[ml_collections.ConfigDict, str], dict],
              required: tuple[str, ...], batching: Batching | None = None) -> list[dict]:
  """Runs (or skips, when its results.json is intact) every cell in `workdir/cells/<name>`;
  with `batching`, unfinished cells of equal keys train together as one population.

  Prints a line per cell with its accuracy, time and the sweep's ETA.

  Returns:
    Each cell's results (without its history), with "cell" and "seed" added.
  """
  directories = [os.path.join(workdir, "cells", name) for name, _ in cells]
  done = {index: runs.read_intact(os.path.join(directory, runs.RESULTS_FILE), required)
          for index, directory in enumerate(directories)}
  pending = [index for index, result in done.items() if result is None]
  note(f"{mode}: {len(cells)} cells, {len(cells) - len(pending)} already finished")
  started, ran = time.perf_counter(), 0
  for group in _groups(pending, cells, batching):
    start = time.perf_counter()
    if len(group) == 1:
      outcomes = [run_cell(cells[group[0]][1], directories[group[0]])]
    else:
      note(f"{len(group)} cells in one program: {', '.join(cells[i][0] for i in group)}")
      outcomes = batching.run([(cells[i][1], directories[i]) for i in group])
    ran += len(group)
    now = time.perf_counter()
    left = len(pending) - ran
    for index, result in zip(group, outcomes):
      done[index] = result
      note(f"[{index + 1}/{len(cells)}] {cells[index][0]}: final test accuracy "
           f"{result['final_test_accuracy']:.2%} ({(now - start) / len(group):.0f} s) | "
           f"ETA {format_seconds((now - started) / ran * left)}")
  return [{"cell": name, "seed": cell.seed,
           **{k: v for k, v in done[index].items() if k != "history"}}
          for index, (name, cell) in enumerate(cells)]


def run_sweep(mode: str, config: ml_collections.ConfigDict, workdir: str,
              cells: list[tuple[str, ml_collections.ConfigDict]],
              run_cell_fn: Callable[[ml_collections.ConfigDict, str], dict],
              report: Callable[[str], str], batching: Batching | None = None) -> dict:
  """A sweep job: claims `workdir` for `config`, runs (or skips) every cell, writes the
  sweep's results.json listing them, and prints `report(workdir)`."""
  run_config = canonical_config(config)
  runs.prepare_workdir(run_config, workdir, LEGACY_FIELDS)
  results = run_cells(mode, workdir, cells, run_cell_fn, ("method", "final_test_accuracy"),
                      batching)
  summary = {"mode": mode, "config_hash": runs.config_hash(run_config), "cells": results}
  runs.write_results(workdir, summary)
  note(report(workdir))
  return summary


@job("prune_sweep")
def run_prune_sweep(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) every cell, then writes results.json and the report."""
  batching = Batching(cells_per_program(config),
                      lambda c: (c.prune.method, c.prune.ablation, c.prune.at_step),
                      run_prune_cells)
  return run_sweep("prune_sweep", config, workdir, cell_configs(config), run_cell,
                   reports.write_prune_report, batching)
