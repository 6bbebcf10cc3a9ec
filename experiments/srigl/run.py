"""Runs the SRigL study (experiments/srigl/config.py) and writes results.json, results.md and
srigl.png here.

  python experiments/srigl/run.py [--workdir runs/srigl] [--models lenet300,wide]
      [--executions masked,condensed] [--seeds 0,1,2] [--methods static,set,rigl,srigl]
      [--summarize-only]

Each cell is one sparse_train run in <workdir>/<model>_<method>_<execution>_d<density>_s<seed>
(resumable: a finished cell is skipped). Condensed execution runs static, set and srigl.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

import lotto

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import config as study  # pylint: disable=wrong-import-position


def cells(models, executions, seeds, methods=study.METHODS):
  """(argument, folder) of every run, in the order they run."""
  for model in models:
    for execution in executions:
      for method in methods:
        if execution == "condensed" and method == "rigl":
          continue  # condensed execution keeps a constant fan-in: static, set, srigl
        for density in study.DENSITIES:
          for seed in seeds:
            yield (f"{model},{method},{execution},{density},{seed}",
                   f"{model}_{method}_{execution}_d{density}_s{seed}")


def summarize(root: str) -> list[dict]:
  """One row per (model, method, execution, density): accuracy and wall time over seeds."""
  groups = collections.defaultdict(list)
  for folder in sorted(os.listdir(root)):
    path = os.path.join(root, folder, "results.json")
    if not os.path.exists(path):
      continue
    model, method, execution, density, _ = folder.split("_")
    groups[(model, method, execution, float(density[1:]))].append(json.load(open(path)))
  rows = []
  for (model, method, execution, density), runs in sorted(groups.items()):
    acc = [r["final_test_accuracy"] for r in runs]
    time = [r["wall_time_s"] for r in runs]
    rows.append({"model": model, "method": method, "execution": execution,
                 "target_density": density, "density": runs[0]["density"], "runs": len(runs),
                 "seeds": sorted(r.get("seed", 0) for r in runs) if "seed" in runs[0] else None,
                 "test_accuracy_mean": float(np.mean(acc)), "test_accuracy_std": float(np.std(acc)),
                 "wall_time_s_mean": float(np.mean(time)), "wall_time_s_std": float(np.std(time))})
  return rows


def table(rows: list[dict]) -> str:
  lines = []
  for model in study.MODELS:
    mine = [r for r in rows if r["model"] == model]
    if not mine:
      continue
    lines += [f"### {model}", "",
              "| method | execution | " + " | ".join(f"{d:.0%} dense" for d in study.DENSITIES)
              + " |", "|---|---|" + "---|" * len(study.DENSITIES)]
    for execution in study.EXECUTIONS:
      for method in study.METHODS:
        by = {r["target_density"]: r for r in mine
              if r["method"] == method and r["execution"] == execution}
        if not by:
          continue
        cell = lambda r: (f"{100 * r['test_accuracy_mean']:.2f} +- "
                          f"{100 * r['test_accuracy_std']:.2f} ({r['wall_time_s_mean']:.1f} s, "
                          f"n={r['runs']})") if r else "-"
        lines.append(f"| {method} | {execution} | "
                     + " | ".join(cell(by.get(d)) for d in study.DENSITIES) + " |")
    lines.append("")
  return "\n".join(lines)


def plot(rows: list[dict], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  models = [m for m in study.MODELS if any(r["model"] == m for r in rows)]
  fig, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
  for column, model in enumerate(models):
    for execution, style in (("masked", "-"), ("condensed", "--")):
      for method in study.METHODS:
        mine = sorted((r for r in rows if r["model"] == model and r["method"] == method
                       and r["execution"] == execution), key=lambda r: r["target_density"])
        if not mine:
          continue
        d = [100 * r["target_density"] for r in mine]
        label = f"{method} ({execution})"
        axes[0, column].errorbar(d, [100 * r["test_accuracy_mean"] for r in mine],
                                 [100 * r["test_accuracy_std"] for r in mine], ls=style,
                                 marker="o", label=label, capsize=3)
        axes[1, column].plot(d, [r["wall_time_s_mean"] for r in mine], ls=style, marker="o",
                             label=label)
    for row, ylabel in ((0, "test accuracy (%)"), (1, "wall-clock per run (s)")):
      axes[row, column].set_xscale("log")
      axes[row, column].set_xlabel("density (%)")
      axes[row, column].set_ylabel(ylabel)
      axes[row, column].set_title(model)
      axes[row, column].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--workdir", default="runs/srigl")
  parser.add_argument("--models", default="lenet300")
  parser.add_argument("--executions", default="masked,condensed")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--methods", default=",".join(study.METHODS))
  parser.add_argument("--summarize-only", action="store_true")
  args = parser.parse_args()
  if not args.summarize_only:
    for argument, folder in cells(args.models.split(","), args.executions.split(","),
                                  [int(s) for s in args.seeds.split(",")],
                                  args.methods.split(",")):
      workdir = os.path.join(args.workdir, folder)
      if os.path.exists(os.path.join(workdir, "results.json")):
        continue
      result = lotto.run_job(lotto.load_config(os.path.join(HERE, "config.py"), argument),
                             workdir)
      print(f"{folder}: {100 * result['final_test_accuracy']:.2f} % in "
            f"{result['wall_time_s']:.1f} s", flush=True)
  rows = summarize(args.workdir)
  with open(os.path.join(HERE, "results.json"), "w") as f:
    json.dump({"rows": rows}, f, indent=1)
  with open(os.path.join(HERE, "results.md"), "w") as f:
    f.write(table(rows))
  plot(rows, os.path.join(HERE, "srigl.png"))


if __name__ == "__main__":
  main()
