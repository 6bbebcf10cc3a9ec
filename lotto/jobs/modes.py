"""The modes `config.mode` names: each job's module, its `--help` line, whether it runs
populations and, for a sweep, its cells. A new mode is one `MODES` entry (and its job).

This module loads no JAX: config files import `lotto.jobs.defaults`, which loads the
`lotto.jobs` package and so this registry.
"""
from __future__ import annotations

import dataclasses

from lotto.core.registry import Registry


@dataclasses.dataclass(frozen=True)
class Mode:
  """A job `config.mode` names.

  Attributes:
    name: the mode.
    module, function: where the job lives (imported when the mode runs).
    help: one line for `lotto --help` ("{sparse_methods}" there lists the registered
      sparse-training methods).
    population: runs `config.seeds` as replicas in one program.
    sweep: for a sweep, (cells function, cell runner) in `module`:
      cells(config) -> [(name, cell config)] and run(cell config, cell dir),
      for `--list_cells` and `--cell`.
  """
  name: str
  module: str
  function: str
  help: str
  population: bool = False
  sweep: tuple[str, str] | None = None


MODES: Registry[Mode] = Registry("mode", ordered=True)


def _register(mode: Mode) -> None:
  MODES.register(mode.name, mode)


def sparse_methods() -> str:
  """The registered sparse-training methods (imported here: `lotto.jobs` loads no JAX)."""
  from lotto.dynamic.methods import SPARSE_METHODS  # pylint: disable=import-outside-toplevel
  return ", ".join(SPARSE_METHODS.names())


_register(Mode("train", "lotto.jobs.masked_train", "run_train", "one dense or masked training run",
               population=True))
_register(Mode("prune", "lotto.jobs.prune", "run_prune",
               "pruning at initialization (or at step k), then training the sparse net",
               population=True))
_register(Mode("prune_sweep", "lotto.jobs.prune_sweep", "run_prune_sweep",
               "methods x densities x ablations x pruning steps x seeds, resumable by cell",
               sweep=("cell_configs", "run_cell")))
_register(Mode("imp", "lotto.jobs.imp", "run_imp",
               "lottery tickets: iterative magnitude pruning with rewinding, and its controls",
               population=True))
_register(Mode("stability", "lotto.jobs.stability", "run_stability",
               "instability to SGD noise and ticket accuracy against the rewind step"))
_register(Mode("sparse_train", "lotto.jobs.sparse_train", "run_sparse_train",
               "sparsity during training: {sparse_methods}", population=True))
_register(Mode("sparse_sweep", "lotto.jobs.sparse_sweep", "run_sparse_sweep",
               "sparse_train methods x densities x seeds, resumable by cell",
               sweep=("sparse_cells", "run_cell")))
_register(Mode("oneshot", "lotto.jobs.oneshot", "run_oneshot",
               "one-shot pruning of a finished train run: magnitude, wanda, sparsegpt"))


def population_modes() -> list[str]:
  """The modes that run `config.seeds` as a population."""
  return [name for name in MODES.names() if MODES.get(name).population]
