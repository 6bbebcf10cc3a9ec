"""The sweep engine: a sweep's cells run, skipped when finished, or batched by shape.

A sweep mode (`prune_sweep`, `sparse_sweep`) expands its config into cells,
each a config of another mode run in `workdir/cells/<name>/`. `run_sweep`
claims the sweep's workdir, runs every cell whose results.json is not intact
(so a killed sweep re-run with the same command continues where it stopped;
a half-done cell resumes from its checkpoint), writes the sweep's
results.json listing every cell and prints the report. With
`sweep.cells_per_program = K` (> 1), up to K unfinished cells of equal shapes
train together as replicas of one compiled program; each cell's directory
still gets exactly what the cell run alone writes (equal within float
rounding, see `jobs.replicas`). `sweep_settings` parses the `sweep` section
the sweep modes share.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

import ml_collections

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs import validators
from lotto.jobs.experiment import canonical_config, population_seeds
from lotto.runtime import runs
from lotto.runtime.devices import note
from lotto.runtime.metrics import format_seconds


@dataclasses.dataclass(frozen=True)
class SweepSettings:
  """The validated `sweep` section (each sweep mode checks its own methods).

  Attributes:
    methods, densities, seeds: the product's axes (densities in (0, 1]).
    ablations, at_steps: prune_sweep's further axes (as given).
    cells_per_program: at most this many equal-shape cells per compiled program.
  """
  methods: tuple[str, ...]
  densities: tuple[float, ...]
  seeds: tuple[int, ...]
  ablations: tuple[str, ...]
  at_steps: tuple[str, ...]
  cells_per_program: int


def sweep_settings(config: ml_collections.ConfigDict) -> SweepSettings:
  """Validates `config.sweep` (and refuses `config.seeds`: a sweep has `sweep.seeds`).

  Raises:
    ConfigError: a list that is not a non-empty tuple, a bad density or seed, or a
      `cells_per_program` that is not a positive integer.
  """
  population_seeds(config)
  sweep = config.sweep
  size = sweep.get("cells_per_program", 1)
  if isinstance(size, bool) or not isinstance(size, int) or size < 1:
    raise ConfigError(f"sweep.cells_per_program must be a positive integer (1: each cell in "
                      f"its own program); got {size!r}")
  lists = {field: validators.sequence(sweep[field], f"sweep.{field}", f"({sweep[field]!r},)")
           for field in ("methods", "densities", "ablations", "at_steps", "seeds")}
  for density in lists["densities"]:
    masks_lib.check_density(density, "sweep.densities entry")
  if not lists["seeds"]:
    raise ConfigError(f"sweep.seeds must be a non-empty list of integers; got {sweep.seeds!r}")
  for seed in lists["seeds"]:
    validators.seed(seed, "sweep.seeds entry")
  if not lists["at_steps"]:
    raise ConfigError("sweep.at_steps must list at least one duration, e.g. ('0it', '100it')")
  return SweepSettings(cells_per_program=size, **lists)


def check_cell_names(cells: list[tuple[str, ml_collections.ConfigDict]], axes: str) -> None:
  """Refuses a sweep without cells (naming its `axes`) and cells that would share a
  directory."""
  if not cells:
    raise ConfigError(f"the sweep has no cells: {axes} must each list at least one value")
  names = [name for name, _ in cells]
  twice = sorted({name for name in names if names.count(name) > 1})
  if twice:
    raise ConfigError(f"sweep cells would share a directory ({twice[0]}): a value is listed "
                      "twice, or two densities agree to 6 significant digits")


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
  runs.prepare_workdir(run_config, workdir)
  results = run_cells(mode, workdir, cells, run_cell_fn, ("method", "final_test_accuracy"),
                      batching)
  summary = {"mode": mode, "config_hash": runs.config_hash(run_config), "cells": results}
  runs.write_results(workdir, summary)
  note(report(workdir))
  return summary
