"""Sparse-training report (`sparse_train` runs, one or a `sparse_sweep`'s cells).

One run: its mask updates (step, density, fraction changed), final and
early-stop accuracy, DSD's phase accuracies, and density vs step with the
test accuracy on a second axis (sparse_train.png). Several runs: final test
accuracy by method and target density (mean +- std over seeds), the density
each reached, accuracy vs density (sparse_train_accuracy.png) and each
method's density schedule (sparse_train_schedules.png).
"""
from __future__ import annotations

import collections
import os

import numpy as np

from lotto.core.errors import ConfigError
from lotto.dynamic.methods import SPARSE_METHODS
from lotto.reports.common import (ReportFiles, finish_report, load_results, pyplot,
                                  save_figure, split, with_seed)

REPORT_FILE = "sparse_train_report.txt"
# What a sparse_train run needs to be in the tables.
REQUIRED = ("method", "target_density", "final_test_accuracy", "density")

Series = tuple[str, str, str]  # (method, topology, control)


def load_sparse_train_results(workdir: str) -> list[dict]:
  """Every sparse_train results.json under `workdir`, with the run's seed (config.json)."""
  return [with_seed(result) for result in load_results(workdir, "sparse_train")]


def _series(r: dict) -> Series:
  return r["method"], r.get("topology", "none"), r.get("control", "none")


def _series_key(series: Series) -> tuple:
  """Registered methods in their registration order, then any other by name."""
  method, order = series[0], SPARSE_METHODS.names()
  rank = order.index(method) if method in order else len(order)
  return rank, series


def _linestyle(method: str) -> str:
  """Dashed for a control (a method whose mask never changes), solid otherwise."""
  return "--" if method in SPARSE_METHODS and SPARSE_METHODS.get(method).control else "-"


def series_label(method: str, topology: str = "none", control: str = "none") -> str:
  """`method`, with the topology (and its control) when the start mask was wired."""
  if topology == "none":
    return method
  return f"{method} ({topology})" if control == "none" else f"{method} ({topology}, {control})"


def _mean_std_n(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
  """"mean+-std (n)" at one decimal, e.g. [0.90, 0.92] -> "91.0+-1.0 (2)"."""
  return (f"{scale * np.mean(values):.{digits}f}+-{scale * np.std(values):.{digits}f} "
          f"({len(values)})")


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
  """The first column left-aligned, the others right-aligned, two spaces apart."""
  widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(header)]
  def line(cells):
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
  return [line(header)] + [line(r) for r in rows]


def _percent(value: float | None, digits: int = 1) -> str:
  return "-" if value is None else f"{100 * value:.{digits}f}"


# --- one run ----------------------------------------------------------------------------------

def density_schedule(result: dict) -> tuple[list[int], list[float]]:
  """(steps, densities) of a step line: the start density at step 0, each mask update,
  and the final density at the last step.

  The start is 1.0 for a method that starts dense (gmp, dsd), otherwise the first update's
  density (set, rigl keep their density) or, without updates (static), the final density.
  """
  updates = sorted(result.get("mask_updates", []), key=lambda u: u["step"])
  final = result["density"]
  method = result["method"]
  if method in SPARSE_METHODS and SPARSE_METHODS.get(method).starts_dense:
    start = 1.0
  else:
    start = updates[0]["density"] if updates else final
  steps, densities = [0], [start]
  for update in updates:
    steps.append(int(update["step"]))
    densities.append(update["density"])
  last = int(result.get("steps", steps[-1]))
  if last >= steps[-1]:
    steps.append(last)
    densities.append(final)
  return steps, densities


def mask_update_table(result: dict) -> str:
  """One run: its mask updates, final and early-stop accuracy, DSD's phases."""
  label = series_label(*_series(result))
  lines = [f"sparse_train {label}: target density {_percent(result['target_density'], 2)}%, "
           f"seed {result.get('seed', 0)}, {result.get('steps', '?')} steps"]
  updates = sorted(result.get("mask_updates", []), key=lambda u: u["step"])
  if updates:
    lines.append(f"mask updates ({len(updates)}):")
    lines += _aligned(["step", "density %", "changed %"],
                      [[str(u["step"]), _percent(u["density"], 2), _percent(u.get("changed"), 2)]
                       for u in updates])
  else:
    lines.append("mask updates: none (the mask is fixed)")
  loss = result.get("final_test_loss")
  lines.append(f"final: test accuracy {_percent(result['final_test_accuracy'])}%, "
               f"test loss {'-' if loss is None else f'{loss:.4f}'}, "
               f"density {_percent(result['density'], 2)}%")
  if result.get("final_test_perplexity") is not None:  # a language model's
    lines.append(f"final: test perplexity {result['final_test_perplexity']:.3f}, "
                 f"bits per character {result['final_test_bpc']:.4f}")
  if result.get("early_stop_step") is not None:
    lines.append(f"early stop (min val loss): step {result['early_stop_step']}, "
                 f"test accuracy {_percent(result.get('early_stop_test_accuracy'))}%")
  phases = result.get("phases") or []
  if phases:
    lines.append(f"{result['method']} phases:")
    lines += _aligned(["phase", "step", "test accuracy %", "density %"],
                      [[p["phase"], str(p["step"]), _percent(p["test_accuracy"]),
                        _percent(p["density"], 2)] for p in phases])
  return "\n".join(lines)


def plot_run(result: dict, path: str) -> None:
  """Density (%) vs step as a step line, test accuracy (%) on a second y axis."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  steps, densities = density_schedule(result)
  ax.step(steps, [100 * d for d in densities], where="post", color="tab:blue", label="density")
  ax.set_xlabel("training step")
  ax.set_ylabel("density (% of prunable weights kept)", color="tab:blue")
  ax.set_ylim(0, 105)
  ax.grid(True, alpha=0.3)
  history = [h for h in result.get("history", []) if h.get("test_accuracy") is not None]
  if history:
    twin = ax.twinx()
    twin.plot([h["step"] for h in history], [100 * h["test_accuracy"] for h in history], "o-",
              markersize=3, color="tab:green", label="test accuracy")
    twin.set_ylabel("test accuracy (%)", color="tab:green")
  for phase in result.get("phases") or []:
    ax.axvline(phase["step"], color="gray", linestyle=":", linewidth=1)
  ax.set_title(f"{series_label(*_series(result))}: density and test accuracy vs step")
  save_figure(fig, path)


# --- several runs -----------------------------------------------------------------------------

def _group(results: list[dict]) -> dict[tuple[Series, float], list[dict]]:
  """{(series, target density): [run, ...]} (one run per seed)."""
  groups = collections.defaultdict(list)
  for r in results:
    groups[(_series(r), round(r["target_density"], 8))].append(r)
  return groups


def accuracy_table(results: list[dict]) -> str:
  """Rows: method; columns: target density; cells: final test accuracy (%)
  "mean+-std (n)" over seeds."""
  groups = _group(results)
  densities = sorted({d for _, d in groups}, reverse=True)
  rows = []
  for series in sorted({s for s, _ in groups}, key=_series_key):
    rows.append([series_label(*series)] + [
        _mean_std_n([r["final_test_accuracy"] for r in groups[(series, d)]])
        if (series, d) in groups else "-" for d in densities])
  lines = ["final test accuracy (%) by method and target density; mean+-std over seeds (n)"]
  return "\n".join(lines + _aligned(["method"] + [f"{d:.4g}" for d in densities], rows))


def perplexity_table(results: list[dict]) -> str:
  """A language model's runs: final test perplexity "mean+-std (n)" over seeds by method
  and target density ("" when a run has no perplexity)."""
  if any(r.get("final_test_perplexity") is None for r in results):
    return ""
  groups = _group(results)
  densities = sorted({d for _, d in groups}, reverse=True)
  rows = [[series_label(*series)] + [
      _mean_std_n([r["final_test_perplexity"] for r in groups[(series, d)]], 1.0, 3)
      if (series, d) in groups else "-" for d in densities]
      for series in sorted({s for s, _ in groups}, key=_series_key)]
  lines = ["final test perplexity by method and target density; mean+-std over seeds (n)"]
  return "\n".join(lines + _aligned(["method"] + [f"{d:.4g}" for d in densities], rows))


def density_table(results: list[dict]) -> str:
  """One row per (method, target density): the density reached (mean over seeds, %),
  the mean number of mask updates and the early-stop accuracy."""
  groups = _group(results)
  rows = []
  for series, d in sorted(groups, key=lambda k: (_series_key(k[0]), -k[1])):
    group = groups[(series, d)]
    early = [r["early_stop_test_accuracy"] for r in group
             if r.get("early_stop_test_accuracy") is not None]
    rows.append([series_label(*series), f"{100 * d:.2f}",
                 f"{100 * np.mean([r['density'] for r in group]):.2f}",
                 f"{np.mean([len(r.get('mask_updates', [])) for r in group]):.0f}",
                 _mean_std_n(early) if early else "-"])
  lines = ["density reached and early-stop test accuracy (%) per method and target density"]
  return "\n".join(lines + _aligned(
      ["method", "target %", "reached %", "updates", "early-stop acc"], rows))


def plot_accuracy_vs_density(results: list[dict], path: str) -> None:
  """Final test accuracy vs target density (log x), one line per method, std as error bars."""
  plt = pyplot()
  groups = _group(results)
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for series in sorted({s for s, _ in groups}, key=_series_key):
    ds = sorted(d for s, d in groups if s == series)
    accuracies = [[100 * r["final_test_accuracy"] for r in groups[(series, d)]] for d in ds]
    ax.errorbar([100 * d for d in ds], [np.mean(a) for a in accuracies],
                yerr=[np.std(a) for a in accuracies], marker="o", capsize=3,
                linestyle=_linestyle(series[0]), label=series_label(*series))
  ax.set_xscale("log")
  ticks = sorted({100 * d for _, d in groups})
  ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
  ax.set_xticks([], minor=True)
  ax.invert_xaxis()
  ax.set_xlabel("target density (% of prunable weights kept, log scale)")
  ax.set_ylabel("final test accuracy (%)")
  ax.set_title("Sparse training: accuracy vs density")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  save_figure(fig, path)


def schedule_runs(results: list[dict]) -> dict[Series, dict]:
  """Per method: the run whose schedule is shown (lowest target density, then lowest seed)."""
  chosen = {}
  for r in sorted(results, key=lambda r: (r["target_density"], r.get("seed", 0), r["path"])):
    chosen.setdefault(_series(r), r)
  return dict(sorted(chosen.items(), key=lambda item: _series_key(item[0])))


def plot_schedules(results: list[dict], path: str) -> None:
  """Density vs step, one step line per method, to compare the schedules."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for series, r in schedule_runs(results).items():
    steps, densities = density_schedule(r)
    ax.step(steps, [100 * d for d in densities], where="post",
            linestyle=_linestyle(series[0]), label=f"{series_label(*series)} (target {100 * r['target_density']:.3g}%, "
                  f"seed {r.get('seed', 0)})")
  ax.set_xlabel("training step")
  ax.set_ylabel("density (% of prunable weights kept)")
  ax.set_ylim(0, 105)
  ax.set_title("Sparse training: density schedule per method")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  save_figure(fig, path)


# --- the report -------------------------------------------------------------------------------

def write_sparse_train_report(workdir: str, results: list[dict] | None = None,
                              outputs: ReportFiles | None = None) -> str:
  """The sparse-training tables (sparse_train_report.txt) and plots at `workdir`.

  One run: the mask-update table and sparse_train.png. Several: the accuracy and
  density tables, sparse_train_accuracy.png and sparse_train_schedules.png. A run that
  diverged or has no results gets a line (the others are tabulated as usual).

  Args:
    workdir: where the report goes.
    results: the sparse_train results to report (default: every one under `workdir`);
      a run without a "seed" gets the one in its config.json.
    outputs: the report's files (`write_report` shares one); by default the returned text
      ends with a line if a file could not be written.

  Returns:
    The text to print (tables and the paths of the plots).

  Raises:
    ConfigError: no sparse_train results.
  """
  results = (load_sparse_train_results(workdir) if results is None
             else [with_seed(r) for r in results])
  if not results:
    raise ConfigError(f"no sparse_train results (results.json with mode 'sparse_train') "
                      f"under {workdir}")
  shown, lines = split(results, REQUIRED, workdir)
  if not shown:
    tables = []
  elif len(shown) == 1:
    tables = [mask_update_table(shown[0])]
  else:
    perplexity = perplexity_table(shown)
    tables = [f"{accuracy_table(shown)}\n\n{density_table(shown)}"
              + (f"\n\n{perplexity}" if perplexity else "")]
  return finish_report(os.path.join(workdir, REPORT_FILE), tables, lines,
                       lambda: _plots(shown, workdir), outputs)


def _plots(results: list[dict], workdir: str) -> list[str]:
  """One run's density and accuracy plot, or several runs' accuracy and schedule plots."""
  if len(results) == 1:
    paths = [os.path.join(workdir, "sparse_train.png")]
    plot_run(results[0], paths[0])
  else:
    paths = [os.path.join(workdir, "sparse_train_accuracy.png"),
             os.path.join(workdir, "sparse_train_schedules.png")]
    plot_accuracy_vs_density(results, paths[0])
    plot_schedules(results, paths[1])
  return paths
