"""Pruning-at-initialization report: accuracy vs density (mean +- std over seeds),
per-layer densities at the lowest density, accuracy vs the step pruning happened at.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from lotto.reports.common import (ReportFiles, finish_report, load_results, pyplot,
                                  save_figure, split, with_seed)

# What a prune run needs to be in the table.
REQUIRED = ("method", "ablation", "target_density", "final_test_accuracy")


def load_prune_results(workdir: str) -> list[dict]:
  """Every prune-mode results.json under `workdir`, with the run's seed."""
  return [with_seed(result) for result in load_results(workdir, "prune")]


def _series(r: dict) -> tuple[str, str, int]:
  """(method, ablation, pruning step) of a prune result."""
  return r["method"], r["ablation"], int(r.get("at_step", 0))


def _series_label(method: str, ablation: str, at_step: int) -> str:
  label = method if ablation == "none" else f"{method} ({ablation})"
  return label if at_step == 0 else f"{label} @{at_step}it"


def _group(results, key: str = "final_test_accuracy"):
  """{(method, ablation, at_step, density): [the runs' `key`, ...]} (final test accuracy)."""
  groups = collections.defaultdict(list)
  for r in results:
    groups[(*_series(r), round(r["target_density"], 8))].append(r[key])
  return groups


def accuracy_table(results: list[dict]) -> str:
  """Rows: method (ablation) [@ pruning step]; columns: target density; mean +- std (n).

  A language model's runs (perplexity in every result) get a perplexity table after it.
  """
  table = _table(results, "final_test_accuracy", "final test accuracy (%)", 100.0, 1)
  if all(r.get("final_test_perplexity") is not None for r in results):
    table += "\n\n" + _table(results, "final_test_perplexity", "final test perplexity", 1.0, 2)
  return table


def _table(results: list[dict], key: str, title: str, scale: float, digits: int) -> str:
  groups = _group(results, key)
  densities = sorted({k[3] for k in groups}, reverse=True)
  rows = sorted({k[:3] for k in groups})
  header = f"{'method (ablation) @step':<32}" + "".join(f"{d:>16.4g}" for d in densities)
  lines = [f"{title} by target density; mean +- std over seeds (n)", header]
  for series in rows:
    cells = []
    for d in densities:
      values = groups.get((*series, d))
      if values:
        cells.append(f"{scale * np.mean(values):>7.{digits}f}+-"
                     f"{scale * np.std(values):<4.{digits}f}"
                     f"({len(values)})")
      else:
        cells.append(f"{'-':>16}")
    lines.append(f"{_series_label(*series):<32}" + "".join(f"{c:>16}" for c in cells))
  return "\n".join(lines)


def plot_accuracy_vs_density(results: list[dict], path: str) -> None:
  plt = pyplot()
  groups = _group(results)
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for series in sorted({k[:3] for k in groups}):
    ds = sorted(k[3] for k in groups if k[:3] == series)
    means = [100 * np.mean(groups[(*series, d)]) for d in ds]
    stds = [100 * np.std(groups[(*series, d)]) for d in ds]
    style = "-" if series[1:] == ("none", 0) else "--"
    ax.errorbar(ds, means, yerr=stds, marker="o", linestyle=style, capsize=3,
                label=_series_label(*series))
  ax.set_xscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("density (fraction of weights kept, log scale)")
  ax.set_ylabel("final test accuracy (%)")
  ax.set_title("Pruning at initialization: accuracy vs density")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  save_figure(fig, path)


def plot_accuracy_vs_prune_step(results: list[dict], path: str) -> bool:
  """Accuracy against the pruning step k, one line per method, one panel per density.

  Only for results with more than one pruning step (a `sweep.at_steps` sweep);
  k = 0 is pruning at initialization. Returns whether a plot was written.
  """
  groups = _group(results)
  steps = sorted({k[2] for k in groups})
  if len(steps) < 2:
    return False
  plt = pyplot()
  densities = sorted({k[3] for k in groups}, reverse=True)
  fig, axes = plt.subplots(1, len(densities), figsize=(4.5 * len(densities), 3.8), squeeze=False)
  for ax, d in zip(axes[0], densities):
    for method, ablation in sorted({k[:2] for k in groups}):
      ks = [k for k in steps if (method, ablation, k, d) in groups]
      if not ks:
        continue
      means = [100 * np.mean(groups[(method, ablation, k, d)]) for k in ks]
      stds = [100 * np.std(groups[(method, ablation, k, d)]) for k in ks]
      ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3,
                  label=_series_label(method, ablation, 0))
    ax.set_xscale("symlog", linthresh=max(1, min(k for k in steps if k > 0)))
    ax.set_xticks(steps)
    ax.set_xticklabels([str(k) for k in steps])
    ax.set_xlabel("pruning step k (0 = at initialization)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"density {d:g}")
    ax.grid(True, alpha=0.3)
  axes[0][0].legend(fontsize=7)
  fig.suptitle("Pruning later in training: accuracy vs pruning step")
  save_figure(fig, path)
  return True


def plot_layer_densities(results: list[dict], density: float, path: str) -> None:
  plt = pyplot()
  chosen = {}
  for r in results:
    if _series(r)[1:] == ("none", 0) and abs(r["target_density"] - density) < 1e-9:
      chosen.setdefault(r["method"], r["layer_densities"])
  if not chosen:
    return
  layers = list(next(iter(chosen.values())))
  fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(layers) + 3), 4.2))
  width = 0.8 / len(chosen)
  for i, (method, per_layer) in enumerate(sorted(chosen.items())):
    values = [max(per_layer[l], 1e-7) for l in layers]
    ax.bar(np.arange(len(layers)) + i * width, values, width, label=method)
  ax.set_yscale("log")
  ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
  ax.set_xticklabels([l.replace("/kernel", "") for l in layers], rotation=45, ha="right",
                     fontsize=7)
  ax.set_ylabel("layer density (log; collapsed = bottom)")
  ax.set_title(f"Per-layer density at global density {density:g}")
  ax.legend(fontsize=7)
  save_figure(fig, path)


def write_prune_report(workdir: str, results: list[dict] | None = None,
                       outputs: ReportFiles | None = None) -> str:
  """The pruning-at-initialization table (report.txt) and plots for `workdir`; a line for
  each run that diverged or has no results.

  Args:
    workdir: where the report goes.
    results: the prune runs (default: every one under `workdir`, with its seed).
    outputs: the report's files (`write_report` shares one); by default the returned text
      ends with a line if a file could not be written.
  """
  results = load_prune_results(workdir) if results is None else results
  shown, lines = split(results, REQUIRED, workdir)
  return finish_report(os.path.join(workdir, "report.txt"),
                       [accuracy_table(shown)] if shown else [], lines,
                       lambda: _plots(shown, workdir), outputs)


def _plots(results: list[dict], workdir: str) -> list[str]:
  """Writes the accuracy, per-layer and (several pruning steps) pruning-step plots."""
  accuracy_png = os.path.join(workdir, "accuracy_vs_density.png")
  plot_accuracy_vs_density(results, accuracy_png)
  lowest = min(r["target_density"] for r in results)
  layers_png = os.path.join(workdir, "layer_densities.png")
  plot_layer_densities(results, lowest, layers_png)
  plots = [accuracy_png, layers_png]
  steps_png = os.path.join(workdir, "accuracy_vs_prune_step.png")
  if plot_accuracy_vs_prune_step(results, steps_png):
    plots.append(steps_png)
  return plots
