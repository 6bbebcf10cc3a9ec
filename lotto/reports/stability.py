"""Stability report: instability (dense, sparse) and ticket accuracy against the rewind step."""
from __future__ import annotations

import os

from lotto.core.errors import ConfigError
from lotto.reports.common import load_results, pyplot, save_figure
from lotto.runtime import runs
from lotto.runtime.devices import is_main_process


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


def write_stability_report(workdir: str) -> str:
  """The stability table (stability_report.txt) and stability.png for `workdir`."""
  found = load_results(workdir, "stability")
  if not found:
    raise ConfigError(f"no stability results (results.json with mode 'stability') under {workdir}")
  result = found[0]
  table = stability_table(result)
  runs.write_text(os.path.join(workdir, "stability_report.txt"), table + "\n")
  if not is_main_process():
    return table
  path = os.path.join(workdir, "stability.png")
  plot_stability(result, path)
  return f"{table}\nplot: {path}"
