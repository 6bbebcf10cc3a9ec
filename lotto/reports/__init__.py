"""Tables and plots from finished runs on disk: `lotto report --workdir=DIR`.

Pruning at initialization (`reports.prune`): accuracy vs density per method
(mean +- std over seeds), per-layer densities, accuracy vs pruning step.
IMP (`reports.imp`): the level table and accuracy / early-stop plots for the
ticket and each branch. Stability (`reports.stability`): instability and
ticket accuracy against the rewind step. Sparse training
(`reports.sparse_train`, sparse_train runs and sparse_sweep cells): one run's
mask updates and density / accuracy vs step, or accuracy by method and density
(mean +- std over seeds) and each method's density schedule. One-shot pruning
(`reports.oneshot`): trained, pruned and fine-tuned accuracy by method, structure and
density (mean +- std over calibration draws), and one run's layers. Populations
(`reports.population`, `config.seeds`): each seed's accuracy and the mean +- std. Reports read only
files, so they can be regenerated for any workdir at any time.

Every run found is reported (`reports.faults`): a run that diverged gets a line saying where
(step, level, rewind step, cell) beside its healthy neighbours' tables; a damaged
results.json gets a line naming it, and an IMP run or stability study is rebuilt from its
units' files. The tables are printed even where their files cannot be written (a
read-only directory, a full disk), with one line saying why.
"""
from __future__ import annotations

import os

from lotto.core.errors import ConfigError
from lotto.reports import faults, imp, stability
from lotto.reports.common import ReportFiles, load_results, with_note, with_seed
from lotto.runtime import files
from lotto.reports.imp import write_imp_report
from lotto.reports.oneshot import write_oneshot_report
from lotto.reports.population import write_population_report
from lotto.reports.prune import load_prune_results, write_prune_report
from lotto.reports.sparse_train import write_sparse_train_report
from lotto.reports.stability import write_stability_report

__all__ = ["load_prune_results", "load_results", "write_imp_report", "write_oneshot_report",
           "write_population_report", "write_prune_report", "write_report",
           "write_sparse_train_report", "write_stability_report"]

# Modes whose runs can be rebuilt from their units' files when their results.json is damaged.
REBUILDERS = {"imp": imp.rebuild, "stability": stability.rebuild}


def write_report(workdir: str) -> str:
  """Builds the tables and plots for every run under `workdir`, of every kind.

  Each stability study gets its report in its own directory; IMP runs
  (outside stability studies) are pooled into one IMP report at `workdir`,
  prune runs into one PaI report and sparse_train runs (a sparse_sweep's
  cells included) into one sparse-training report. Runs that diverged and
  damaged results files get a line each; files that cannot be written are
  skipped with one line saying why.

  Returns:
    The text to print (tables and the paths of the plots).

  Raises:
    ConfigError: no results under `workdir`.
  """
  if not files.is_dir(workdir):
    raise ConfigError(f"--workdir {workdir} does not exist")
  found, damaged = faults.scan(workdir)
  damaged_lines = []
  for entry in damaged:
    rebuilt = _rebuild(entry.path)
    if rebuilt is not None:
      found.append(rebuilt[0])
    damaged_lines.append(faults.damaged_line(entry, workdir, rebuilt and rebuilt[1]))
  found.sort(key=lambda result: result["path"])
  by_mode = {}
  for result in found:
    by_mode.setdefault(result.get("mode"), []).append(result)
  outputs = ReportFiles()
  parts = []
  populations = by_mode.get("population", [])
  if populations:  # each population's own table; its replicas are pooled below by mode
    parts.append(write_population_report(populations, outputs))
  studies = by_mode.get("stability", [])
  for study in studies:  # each study's own table and plot, in its own directory
    parts.append(write_stability_report(study["path"], _with_finished_steps(study), outputs))
  # IMP runs inside a stability study are part of it, not runs of their own.
  inside = [os.path.join(study["path"], "") for study in studies]
  imp_runs = [run for run in by_mode.get("imp", [])
              if not any(os.path.join(run["path"], "").startswith(s) for s in inside)]
  if imp_runs:
    parts.append(write_imp_report(workdir, imp_runs, outputs))
  if by_mode.get("prune"):
    parts.append(write_prune_report(workdir, [with_seed(r) for r in by_mode["prune"]], outputs))
  if by_mode.get("sparse_train"):
    parts.append(write_sparse_train_report(workdir, by_mode["sparse_train"], outputs))
  if by_mode.get("oneshot"):
    parts.append(write_oneshot_report(workdir, by_mode["oneshot"], outputs))
  parts += _divergence_lines(found, by_mode, workdir)
  if not parts and not damaged_lines:
    raise ConfigError(f"no results (results.json of a prune, prune_sweep, imp, stability, "
                      f"sparse_train, sparse_sweep or oneshot run, or a population) under "
                      f"{workdir}")
  return with_note("\n\n".join(parts + (["\n".join(damaged_lines)] if damaged_lines else [])),
                   outputs)


def _rebuild(directory: str) -> tuple[dict, str] | None:
  """(results, what from) for a run whose results.json is damaged, where its units allow."""
  config = faults.run_config(directory)
  if config is None or config.get("seeds") or config.get("mode") not in REBUILDERS:
    return None
  return REBUILDERS[config["mode"]](directory, config)


def _with_finished_steps(study: dict) -> dict:
  """A study that stopped at a divergence, with the rewind steps it finished before."""
  if not faults.stopped(study) or study.get("rewind"):
    return study
  rebuilt = stability.rebuild(study["path"], faults.run_config(study["path"]) or {})
  return study if rebuilt is None else {**rebuilt[0], **study, "rewind": rebuilt[0]["rewind"]}


def _divergence_lines(found: list[dict], by_mode: dict, workdir: str) -> list[str]:
  """A line for each diverged run no report above shows: a train run (it has no report), a
  sweep whose cells trained in one program (a cell that ran alone has its own line)."""
  lines = [faults.diverged_line(r, workdir, shown=False) for r in by_mode.get("train", [])
           if r.get("diverged")]
  for mode in ("prune_sweep", "sparse_sweep"):
    for sweep in by_mode.get(mode, []):
      covered = any(other is not sweep and other.get("diverged_in") == sweep.get("diverged_in")
                    and other["path"].startswith(os.path.join(sweep["path"], ""))
                    for other in found)
      if faults.stopped(sweep) and not covered:
        lines.append(faults.diverged_line(sweep, workdir, shown=False))
  return ["\n".join(lines)] if lines else []
