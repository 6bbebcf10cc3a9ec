"""Tables and plots from finished runs: `lotto report --workdir=DIR`.

Reads every pruning result under a workdir (a sweep's cells or single prune
runs), prints the accuracy-vs-density table (mean +- std over seeds) and
writes PNG plots beside it: accuracy vs density per method (log axis) and
per-layer density per method at one density (where layer collapse shows).
"""
from __future__ import annotations

import collections
import os

import numpy as np

from lotto import runs
from lotto.errors import ConfigError


def load_prune_results(workdir: str) -> list[dict]:
  """Every prune-mode results.json under `workdir`."""
  found = []
  for root, _, files in os.walk(workdir):
    if runs.RESULTS_FILE in files:
      result = runs.read_json(os.path.join(root, runs.RESULTS_FILE))
      if result.get("mode") == "prune":
        result["seed"] = runs.read_json(os.path.join(root, runs.CONFIG_FILE)).get("seed", 0) \
            if os.path.exists(os.path.join(root, runs.CONFIG_FILE)) else 0
        found.append(result)
  return found


def _group(results):
  groups = collections.defaultdict(list)
  for r in results:
    groups[(r["method"], r["ablation"], round(r["target_density"], 8))].append(
        r["final_test_accuracy"])
  return groups


def accuracy_table(results: list[dict]) -> str:
  """Rows: method (ablation); columns: target density; cells: mean +- std (n)."""
  groups = _group(results)
  densities = sorted({k[2] for k in groups}, reverse=True)
  rows = sorted({(k[0], k[1]) for k in groups})
  header = f"{'method (ablation)':<28}" + "".join(f"{d:>16.4g}" for d in densities)
  lines = ["final test accuracy (%) by target density; mean +- std over seeds (n)", header]
  for method, ablation in rows:
    cells = []
    for d in densities:
      values = groups.get((method, ablation, d))
      if values:
        cells.append(f"{100 * np.mean(values):>7.1f}+-{100 * np.std(values):<4.1f}({len(values)})")
      else:
        cells.append(f"{'-':>16}")
    label = method if ablation == "none" else f"{method} ({ablation})"
    lines.append(f"{label:<28}" + "".join(f"{c:>16}" for c in cells))
  return "\n".join(lines)


def plot_accuracy_vs_density(results: list[dict], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  groups = _group(results)
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for method, ablation in sorted({(k[0], k[1]) for k in groups}):
    ds = sorted(d for (m, a, d) in groups if (m, a) == (method, ablation))
    means = [100 * np.mean(groups[(method, ablation, d)]) for d in ds]
    stds = [100 * np.std(groups[(method, ablation, d)]) for d in ds]
    style = "-" if ablation == "none" else "--"
    ax.errorbar(ds, means, yerr=stds, marker="o", linestyle=style, capsize=3,
                label=method if ablation == "none" else f"{method} ({ablation})")
  ax.set_xscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("density (fraction of weights kept, log scale)")
  ax.set_ylabel("final test accuracy (%)")
  ax.set_title("Pruning at initialization: accuracy vs density")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_layer_densities(results: list[dict], density: float, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  chosen = {}
  for r in results:
    if r["ablation"] == "none" and abs(r["target_density"] - density) < 1e-9:
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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(workdir: str) -> str:
  """Builds the table and plots for `workdir`; returns the text printed.

  Raises:
    ConfigError: no pruning results under `workdir`.
  """
  results = load_prune_results(workdir)
  if not results:
    raise ConfigError(f"no prune results (results.json with mode 'prune') under {workdir}")
  table = accuracy_table(results)
  with open(os.path.join(workdir, "report.txt"), "w") as handle:
    handle.write(table + "\n")
  accuracy_png = os.path.join(workdir, "accuracy_vs_density.png")
  plot_accuracy_vs_density(results, accuracy_png)
  lowest = min(r["target_density"] for r in results)
  layers_png = os.path.join(workdir, "layer_densities.png")
  plot_layer_densities(results, lowest, layers_png)
  return f"{table}\nplots: {accuracy_png}, {layers_png}"
