"""Stability report: instability (dense, sparse) and ticket accuracy against the rewind step."""
from __future__ import annotations

import os
import re

from lotto.core.errors import ConfigError
from lotto.reports import faults
from lotto.reports.common import (ReportFiles, finish_report, load_results, pyplot,
                                  save_figure, split)
from lotto.runtime import files, runs

REQUIRED = ("points", "rewind")  # what a study needs to be tabulated (a finished rewind step)


def _number(value: float | None, scale: float, width: int, digits: int) -> str:
  """`scale * value` right-aligned, "-" for a missing or non-finite (null) value."""
  return f"{'-':>{width}}" if value is None else f"{scale * value:>{width}.{digits}f}"


def stability_table(result: dict) -> str:
  """One row per rewind step: instability (dense, sparse) and ticket accuracy (and a
  language model's ticket perplexity)."""
  language = any("ticket_perplexity" in r for r in result["rewind"])
  lines = [f"instability = max test error on the {result['points']}-point path - mean endpoint "
           "error (percentage points)",
           f"{'k (steps)':>10} {'dense':>8} {'sparse':>8} {'ticket acc %':>13} {'density %':>10}"
           + (f" {'ticket ppl':>10}" if language else "")]
  for r in result["rewind"]:
    sparse = r.get("sparse")
    lines.append(f"{r['rewind_step']:>10} {_number(r['dense']['instability'], 100, 8, 2)} "
                 f"{_number(sparse['instability'] if sparse else float('nan'), 100, 8, 2)} "
                 f"{_number(r.get('ticket_accuracy', float('nan')), 100, 13, 1)} "
                 f"{_number(r.get('ticket_density', float('nan')), 100, 10, 2)}"
                 + (f" {_number(r.get('ticket_perplexity'), 1, 10, 2)}" if language else ""))
  return "\n".join(lines)


def plot_stability(result: dict, path: str) -> None:
  """Instability and ticket accuracy against k; error along each path."""
  plt = pyplot()
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
  save_figure(fig, path)


def write_stability_report(workdir: str, result: dict | None = None,
                           outputs: ReportFiles | None = None) -> str:
  """The stability table (stability_report.txt) and stability.png for `workdir`; a study
  that diverged gets a line saying where (and its finished rewind steps in the table).

  Args:
    workdir: the study's directory, where its report goes.
    result: the study's results (default: its results.json).
    outputs: the report's files (`write_report` shares one); by default the returned text
      ends with a line if a file could not be written.
  """
  if result is None:
    found = load_results(workdir, "stability")
    if not found:
      raise ConfigError(f"no stability results (results.json with mode 'stability') under "
                        f"{workdir}")
    result = found[0]
  shown, lines = split([result], REQUIRED, workdir)
  return finish_report(os.path.join(workdir, "stability_report.txt"),
                       [stability_table(r) for r in shown], lines,
                       lambda: _plot_file(shown[0], workdir), outputs, label="plot")


def _plot_file(result: dict, workdir: str) -> list[str]:
  path = os.path.join(workdir, "stability.png")
  plot_stability(result, path)
  return [path]


def rebuild(directory: str, config: dict) -> tuple[dict, str] | None:
  """A study's results from its rewind steps' own files (`k_<k>/results.json`), for a
  study whose results.json is damaged or that stopped at a divergence. Returns (the
  results, what they were rebuilt from), or None without a finished rewind step."""
  records = []
  for name in files.listdir(directory):
    path = os.path.join(directory, name, runs.RESULTS_FILE)
    if not re.fullmatch(r"k_\d+", name) or not files.exists(path):
      continue
    record = faults.read_results(path)
    if isinstance(record, dict) and "rewind_step" in record and "dense" in record:
      records.append({key: value for key, value in record.items() if key != "mode"})
  if not records:
    return None
  settings = config.get("stability", {})
  result = {"mode": "stability", "path": directory, "seed": config.get("seed", 0),
            "points": settings.get("points"), "levels": settings.get("levels"),
            "rewind": sorted(records, key=lambda r: r["rewind_step"])}
  steps = faults.span([r["rewind_step"] for r in records])
  return result, f"its k_<k>/results.json (rewind steps {steps})"
