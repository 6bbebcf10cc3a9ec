"""Tables and plots from finished runs: `lotto report --workdir=DIR`.

Pruning at initialization: reads every prune result under a workdir (a
sweep's cells or single prune runs), prints the accuracy-vs-density table
(mean +- std over seeds) and writes accuracy vs density per method (log axis)
and per-layer density per method at one density (where layer collapse shows).

IMP: reads every IMP run under a workdir (one run, or several, e.g. seeds),
prints the level table (mean +- std over runs) and writes accuracy vs density
for the ticket and each branch, and the early-stopping iteration vs density.

Stability: the instability and ticket accuracy against the rewind step.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from lotto import runs
from lotto.errors import ConfigError


def _pyplot():
  """matplotlib.pyplot on the file-only Agg backend (imported on first plot)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def load_prune_results(workdir: str) -> list[dict]:
  """Every prune-mode results.json under `workdir`, with the run's seed."""
  found = []
  for result in load_results(workdir, "prune"):
    config_path = os.path.join(result["path"], runs.CONFIG_FILE)
    seed = runs.read_json(config_path).get("seed", 0) if os.path.exists(config_path) else 0
    found.append({**result, "seed": seed})
  return found


def _series(r: dict) -> tuple[str, str, int]:
  """(method, ablation, pruning step) of a prune result."""
  return r["method"], r["ablation"], int(r.get("at_step", 0))


def _series_label(method: str, ablation: str, at_step: int) -> str:
  label = method if ablation == "none" else f"{method} ({ablation})"
  return label if at_step == 0 else f"{label} @{at_step}it"


def _group(results):
  """{(method, ablation, at_step, density): [final test accuracy, ...]}."""
  groups = collections.defaultdict(list)
  for r in results:
    groups[(*_series(r), round(r["target_density"], 8))].append(r["final_test_accuracy"])
  return groups


def accuracy_table(results: list[dict]) -> str:
  """Rows: method (ablation) [@ pruning step]; columns: target density; mean +- std (n)."""
  groups = _group(results)
  densities = sorted({k[3] for k in groups}, reverse=True)
  rows = sorted({k[:3] for k in groups})
  header = f"{'method (ablation) @step':<32}" + "".join(f"{d:>16.4g}" for d in densities)
  lines = ["final test accuracy (%) by target density; mean +- std over seeds (n)", header]
  for series in rows:
    cells = []
    for d in densities:
      values = groups.get((*series, d))
      if values:
        cells.append(f"{100 * np.mean(values):>7.1f}+-{100 * np.std(values):<4.1f}({len(values)})")
      else:
        cells.append(f"{'-':>16}")
    lines.append(f"{_series_label(*series):<32}" + "".join(f"{c:>16}" for c in cells))
  return "\n".join(lines)


def plot_accuracy_vs_density(results: list[dict], path: str) -> None:
  plt = _pyplot()
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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_accuracy_vs_prune_step(results: list[dict], path: str) -> bool:
  """Accuracy against the pruning step k, one line per method, one panel per density.

  Only for results with more than one pruning step (a `sweep.at_steps` sweep);
  k = 0 is pruning at initialization. Returns whether a plot was written.
  """
  groups = _group(results)
  steps = sorted({k[2] for k in groups})
  if len(steps) < 2:
    return False
  plt = _pyplot()
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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def plot_layer_densities(results: list[dict], density: float, path: str) -> None:
  plt = _pyplot()
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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(workdir: str) -> str:
  """Builds the tables and plots for every kind of result under `workdir`.

  Returns:
    The text to print (tables and the paths of the plots).

  Raises:
    ConfigError: no results under `workdir`.
  """
  if not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} does not exist")
  parts = []
  if load_results(workdir, "stability"):
    parts.append(write_stability_report(workdir))
  elif load_results(workdir, "imp"):
    parts.append(write_imp_report(workdir))
  if load_prune_results(workdir):
    parts.append(write_prune_report(workdir))
  if not parts:
    raise ConfigError(f"no results (results.json of a prune, prune_sweep, imp or stability "
                      f"run) under {workdir}")
  return "\n\n".join(parts)


def write_prune_report(workdir: str) -> str:
  """The pruning-at-initialization table and plots for `workdir`."""
  results = load_prune_results(workdir)
  table = accuracy_table(results)
  with open(os.path.join(workdir, "report.txt"), "w") as handle:
    handle.write(table + "\n")
  accuracy_png = os.path.join(workdir, "accuracy_vs_density.png")
  plot_accuracy_vs_density(results, accuracy_png)
  lowest = min(r["target_density"] for r in results)
  layers_png = os.path.join(workdir, "layer_densities.png")
  plot_layer_densities(results, lowest, layers_png)
  plots = [accuracy_png, layers_png]
  steps_png = os.path.join(workdir, "accuracy_vs_prune_step.png")
  if plot_accuracy_vs_prune_step(results, steps_png):
    plots.append(steps_png)
  return f"{table}\nplots: {', '.join(plots)}"


# ----------------------------------------------------------------------------
# IMP

def load_results(workdir: str, mode: str) -> list[dict]:
  """Every results.json of `mode` under `workdir` (the root included), sorted by path."""
  found = []
  for root, dirs, files in sorted(os.walk(workdir)):
    dirs.sort()
    if runs.RESULTS_FILE in files:
      result = runs.read_json(os.path.join(root, runs.RESULTS_FILE))
      if result.get("mode") == mode:
        found.append({**result, "path": root})
  return found


def imp_series(results: list[dict]) -> dict[tuple[str, tuple[float, int]], list[dict]]:
  """Records grouped by (series, (fraction, level)); series "ticket" or a branch name.

  Runs with the same per-level fraction (e.g. seeds) are pooled level by level.
  """
  groups = collections.defaultdict(list)
  for run in results:
    fraction = run.get("fraction")
    for record in run["levels"]:
      groups[("ticket", (fraction, record["level"]))].append(record)
    for record in run.get("branches", []):
      groups[(record["branch"], (fraction, record["level"]))].append(record)
  return groups


def _mean_std(values: list[float | None], scale: float = 100.0) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return f"{scale * values[0]:.1f}"
  return f"{scale * np.mean(values):.1f}+-{scale * np.std(values):.1f}"


def imp_table(results: list[dict]) -> str:
  """One row per level: density, the ticket's final / early-stop accuracy and
  early-stop step, and each branch's final accuracy (mean +- std over runs)."""
  groups = imp_series(results)
  branch_names = sorted({s for s, _ in groups if s != "ticket"})
  rows_keys = sorted({k for s, k in groups if s == "ticket"},
                     key=lambda k: -np.mean([r["density"] for r in groups[("ticket", k)]]))
  columns = ["level", "density %", "n", "ticket", "ticket early-stop", "early-stop step"]
  columns += branch_names
  rows = []
  for key in rows_keys:
    ticket = groups[("ticket", key)]
    steps = [r["early_stop_step"] for r in ticket if r.get("early_stop_step") is not None]
    row = [str(key[1]), f"{100 * np.mean([r['density'] for r in ticket]):.2f}", str(len(ticket)),
           _mean_std([r["final_test_accuracy"] for r in ticket]),
           _mean_std([r.get("early_stop_test_accuracy") for r in ticket]),
           f"{np.mean(steps):.0f}" if steps else "-"]
    for name in branch_names:
      row.append(_mean_std([r["final_test_accuracy"] for r in groups.get((name, key), [])]))
    rows.append(row)
  widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
  lines = [f"IMP: final test accuracy (%) of the ticket and each branch, early-stop accuracy and "
           f"step of the ticket; {len(results)} run(s), mean +- std where n > 1",
           "  ".join(c.rjust(w) for c, w in zip(columns, widths))]
  lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
  return "\n".join(lines)


def _curve(records_by_key: dict, field: str, scale: float):
  points = []
  for records in records_by_key.values():
    values = [r[field] for r in records if r.get(field) is not None]
    if values:
      points.append((100 * np.mean([r["density"] for r in records]), scale * np.mean(values),
                     scale * np.std(values)))
  points.sort(reverse=True)
  return [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]


def plot_imp(results: list[dict], directory: str) -> list[str]:
  """Writes imp_accuracy.png and imp_early_stop.png; returns their paths."""
  plt = _pyplot()
  groups = imp_series(results)
  series = collections.defaultdict(dict)
  for (name, key), records in groups.items():
    series[name][key] = records
  order = ["ticket"] + sorted(n for n in series if n != "ticket")
  paths = []
  for field, scale, ylabel, filename in (
      ("final_test_accuracy", 100.0, "final test accuracy (%)", "imp_accuracy.png"),
      ("early_stop_step", 1.0, "early-stopping iteration (min val loss)", "imp_early_stop.png")):
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in order:
      xs, ys, es = _curve(series[name], field, scale)
      if xs:
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, linestyle="-" if name == "ticket"
                    else "--", label="lottery ticket" if name == "ticket" else name)
    dense_records = [r for (_, level), records in series["ticket"].items() if level == 0
                     for r in records]
    if field == "final_test_accuracy" and dense_records:
      dense = 100 * np.mean([r[field] for r in dense_records])
      ax.axhline(dense, color="gray", linestyle=":", label=f"dense ({dense:.1f}%)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("density (% of prunable weights kept, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"IMP over {len(results)} run(s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(directory, filename)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
  return paths


def write_imp_report(workdir: str) -> str:
  """The IMP level table (imp_report.txt) and plots for every IMP run under `workdir`."""
  results = load_results(workdir, "imp")
  if not results:
    raise ConfigError(f"no IMP results (results.json with mode 'imp') under {workdir}")
  table = imp_table(results)
  with open(os.path.join(workdir, "imp_report.txt"), "w") as handle:
    handle.write(table + "\n")
  paths = plot_imp(results, workdir)
  return f"{table}\nplots: {', '.join(paths)}"


# ----------------------------------------------------------------------------
# Stability (rewinding studies)

def stability_table(result: dict) -> str:
  """One row per rewind step: instability (dense, sparse) and ticket accuracy."""
  lines = [f"instability = max test error on the {result['points']}-point path - mean endpoint "
           "error (percentage points)",
           f"{'k (steps)':>10} {'dense':>8} {'sparse':>8} {'ticket acc %':>13} {'density %':>10}"]
  for r in result["rewind"]:
    sparse = r.get("sparse")
    lines.append(f"{r['rewind_step']:>10} {100 * r['dense']['instability']:>8.2f} "
                 f"{100 * sparse['instability'] if sparse else float('nan'):>8.2f} "
                 f"{100 * r.get('ticket_accuracy', float('nan')):>13.1f} "
                 f"{100 * r.get('ticket_density', float('nan')):>10.2f}")
  return "\n".join(lines)


def plot_stability(result: dict, path: str) -> None:
  """Instability and ticket accuracy against k; error along each path."""
  plt = _pyplot()
  records = sorted(result["rewind"], key=lambda r: r["rewind_step"])
  ks = [r["rewind_step"] for r in records]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  ax = axes[0]
  ax.plot(ks, [100 * r["dense"]["instability"] for r in records], "o-", label="dense instability")
  if all("sparse" in r for r in records):
    ax.plot(ks, [100 * r["sparse"]["instability"] for r in records], "s-",
            label=f"sparse instability ({100 * records[0]['ticket_density']:.1f}% density)")
    twin = ax.twinx()
    twin.plot(ks, [100 * r["ticket_accuracy"] for r in records], "^--", color="tab:green",
              label="ticket test accuracy")
    twin.set_ylabel("ticket test accuracy (%)", color="tab:green")
    twin.legend(loc="upper right", fontsize=8)
  positive = [k for k in ks if k > 0]
  if positive:
    ax.set_xscale("symlog", linthresh=min(positive))
  ax.set_xlabel("rewind step k")
  ax.set_ylabel("instability (percentage points)")
  ax.grid(True, alpha=0.3)
  ax.legend(loc="upper left", fontsize=8)
  ax.set_title("Instability and ticket accuracy vs rewind step")
  ax = axes[1]
  for r in records:
    for kind, style in (("dense", "-"), ("sparse", "--")):
      if kind in r:
        ax.plot(r[kind]["alphas"], [100 * e for e in r[kind]["errors"]], style,
                label=f"k={r['rewind_step']} {kind}")
  ax.set_xlabel("interpolation alpha (0 = copy a, 1 = copy b)")
  ax.set_ylabel("test error (%)")
  ax.set_title("Error along the linear path")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_stability_report(workdir: str) -> str:
  """The stability table (stability_report.txt) and stability.png for `workdir`."""
  found = load_results(workdir, "stability")
  if not found:
    raise ConfigError(f"no stability results (results.json with mode 'stability') under {workdir}")
  result = found[0]
  table = stability_table(result)
  with open(os.path.join(workdir, "stability_report.txt"), "w") as handle:
    handle.write(table + "\n")
  path = os.path.join(workdir, "stability.png")
  plot_stability(result, path)
  return f"{table}\nplot: {path}"
