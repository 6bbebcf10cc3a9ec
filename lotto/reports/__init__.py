"""Tables and plots from finished runs on disk: `lotto report --workdir=DIR`.

Pruning at initialization (`reports.prune`): accuracy vs density per method
(mean +- std over seeds), per-layer densities, accuracy vs pruning step.
IMP (`reports.imp`): the level table and accuracy / early-stop plots for the
ticket and each branch. Stability (`reports.stability`): instability and
ticket accuracy against the rewind step. Sparse training
(`reports.sparse_train`, sparse_train runs and sparse_sweep cells): one run's
mask updates and density / accuracy vs step, or accuracy by method and density
(mean +- std over seeds) and each method's density schedule. Populations
(`reports.population`, `config.seeds`): each seed's accuracy and the mean +- std. Reports read only
files, so they can be regenerated for any workdir at any time.
"""
from __future__ import annotations

import os

from lotto.core.errors import ConfigError
from lotto.reports.common import load_results
from lotto.runtime import files
from lotto.reports.imp import write_imp_report
from lotto.reports.population import write_population_report
from lotto.reports.prune import load_prune_results, write_prune_report
from lotto.reports.sparse_train import write_sparse_train_report
from lotto.reports.stability import write_stability_report

__all__ = ["load_prune_results", "load_results", "write_imp_report", "write_population_report",
           "write_prune_report", "write_report", "write_sparse_train_report",
           "write_stability_report"]


def write_report(workdir: str) -> str:
  """Builds the tables and plots for every run under `workdir`, of every kind.

  Each stability study gets its report in its own directory; IMP runs
  (outside stability studies) are pooled into one IMP report at `workdir`,
  prune runs into one PaI report and sparse_train runs (a sparse_sweep's
  cells included) into one sparse-training report.

  Returns:
    The text to print (tables and the paths of the plots).

  Raises:
    ConfigError: no results under `workdir`.
  """
  if not files.is_dir(workdir):
    raise ConfigError(f"--workdir {workdir} does not exist")
  parts = []
  populations = load_results(workdir, "population")
  if populations:  # each population's own table; its replicas are pooled below by mode
    parts.append(write_population_report(populations))
  stability_runs = load_results(workdir, "stability")
  for run in stability_runs:  # each study's own table and plot, in its own directory
    parts.append(write_stability_report(run["path"]))
  # IMP runs inside a stability study are part of it, not runs of their own.
  studies = [os.path.join(run["path"], "") for run in stability_runs]
  imp_runs = [run for run in load_results(workdir, "imp")
              if not any(os.path.join(run["path"], "").startswith(s) for s in studies)]
  if imp_runs:
    parts.append(write_imp_report(workdir, imp_runs))
  if load_prune_results(workdir):
    parts.append(write_prune_report(workdir))
  sparse_runs = load_results(workdir, "sparse_train")
  if sparse_runs:
    parts.append(write_sparse_train_report(workdir, sparse_runs))
  if not parts:
    raise ConfigError(f"no results (results.json of a prune, prune_sweep, imp, stability, "
                      f"sparse_train or sparse_sweep run, or a population) under {workdir}")
  return "\n\n".join(parts)
