"""IMP report: the level table (mean +- std over runs with the same fraction) and
accuracy / early-stop iteration vs density for the ticket and each branch.
"""
from __future__ import annotations

import collections
import os
import re

import numpy as np

from lotto.core.errors import ConfigError
from lotto.reports import faults
from lotto.reports.common import (ReportFiles, finish_report, load_results, pyplot,
                                  save_figure, split)
from lotto.runtime import files, runs

REQUIRED = ("levels",)  # what an IMP run needs to be in the table (a finished level)


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


def _mean_std(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return f"{scale * values[0]:.{digits}f}"
  return f"{scale * np.mean(values):.{digits}f}+-{scale * np.std(values):.{digits}f}"


def imp_table(results: list[dict]) -> str:
  """One row per level: density, the ticket's final / early-stop accuracy and
  early-stop step, and each branch's final accuracy (mean +- std over runs)."""
  groups = imp_series(results)
  branch_names = sorted({s for s, _ in groups if s != "ticket"})
  rows_keys = sorted({k for s, k in groups if s == "ticket"},
                     key=lambda k: -np.mean([r["density"] for r in groups[("ticket", k)]]))
  # A language model's runs (perplexity in their records) also show the ticket's.
  language = any(r.get("final_test_perplexity") is not None
                 for (series, _), records in groups.items() if series == "ticket" for r in records)
  columns = ["level", "density %", "n", "ticket", "ticket early-stop", "early-stop step"]
  columns += ["ticket ppl", "ticket bpc"] if language else []
  columns += branch_names
  rows = []
  for key in rows_keys:
    ticket = groups[("ticket", key)]
    steps = [r["early_stop_step"] for r in ticket if r.get("early_stop_step") is not None]
    row = [str(key[1]), f"{100 * np.mean([r['density'] for r in ticket]):.2f}", str(len(ticket)),
           _mean_std([r["final_test_accuracy"] for r in ticket]),
           _mean_std([r.get("early_stop_test_accuracy") for r in ticket]),
           f"{np.mean(steps):.0f}" if steps else "-"]
    if language:
      row += [_mean_std([r.get(f"final_test_{k}") for r in ticket], 1.0, 3)
              for k in ("perplexity", "bpc")]
    for name in branch_names:
      row.append(_mean_std([r["final_test_accuracy"] for r in groups.get((name, key), [])]))
    rows.append(row)
  widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
  lines = [f"IMP: final test accuracy (%) of the ticket and each branch, early-stop accuracy and "
           f"step of the ticket{', its test perplexity and bits per character' if language else ''}"
           f"; {len(results)} run(s), mean +- std where n > 1",
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
  plt = pyplot()
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
                     for r in records if r.get(field) is not None]
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
    path = os.path.join(directory, filename)
    save_figure(fig, path)
    paths.append(path)
  return paths


def write_imp_report(workdir: str, results: list[dict] | None = None,
                     outputs: ReportFiles | None = None) -> str:
  """The IMP level table (imp_report.txt) and plots at `workdir`; a line for each run that
  diverged (where; the levels it finished are in the table) or has no level yet.

  Args:
    workdir: where the report goes.
    results: the IMP runs to pool (default: every IMP run under `workdir`).
    outputs: the report's files (`write_report` shares one); by default the returned text
      ends with a line if a file could not be written.
  """
  results = load_results(workdir, "imp") if results is None else results
  if not results:
    raise ConfigError(f"no IMP results (results.json with mode 'imp') under {workdir}")
  shown, lines = split(results, REQUIRED, workdir)
  return finish_report(os.path.join(workdir, "imp_report.txt"),
                       [imp_table(shown)] if shown else [], lines,
                       lambda: plot_imp(shown, workdir), outputs)


def rebuild(directory: str, config: dict) -> tuple[dict, str] | None:
  """An IMP run's results from its units' files, for a run whose results.json is damaged:
  each `level_<L>/results.json` and `level_<L>/branches/<name>/results.json` (damaged
  ones left out). Returns (the results, what they were rebuilt from), or None without a
  readable level."""
  levels, branches = [], []
  for name in files.listdir(directory):
    if not re.fullmatch(r"level_\d+", name):
      continue
    record = _unit(os.path.join(directory, name), ("level", "final_test_accuracy"))
    if record is not None:
      levels.append(record)
    branch_root = os.path.join(directory, name, "branches")
    for branch in files.listdir(branch_root) if files.is_dir(branch_root) else ():
      record = _unit(os.path.join(branch_root, branch), ("branch", "level", "final_test_accuracy"))
      if record is not None:
        branches.append(record)
  if not levels:
    return None
  imp = config.get("imp", {})
  result = {"mode": "imp", "path": directory, "seed": config.get("seed", 0),
            "fraction": imp.get("fraction"), "scope": imp.get("scope"),
            "levels": sorted(levels, key=lambda r: r["level"]),
            "branches": sorted(branches, key=lambda r: (r["level"], r["branch"]))}
  source = (f"its level_<L>/results.json (levels {faults.span([r['level'] for r in levels])})"
            + (f" and {len(branches)} branch results" if branches else ""))
  return result, source


def _unit(directory: str, required: tuple[str, ...]) -> dict | None:
  """A unit's record (without its history), or None if missing, damaged or incomplete."""
  path = os.path.join(directory, runs.RESULTS_FILE)
  record = faults.read_results(path) if files.exists(path) else None
  if not isinstance(record, dict) or any(key not in record for key in required):
    return None
  return {key: value for key, value in record.items() if key not in ("history", "mode")}
