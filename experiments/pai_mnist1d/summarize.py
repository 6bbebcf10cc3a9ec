"""The PaI reproduction's markdown table: every method and ablation against
magnitude pruning after training, final test accuracy (%) mean +- std over seeds.

  python experiments/pai_mnist1d/summarize.py --sweep runs/pai_mnist1d --mat runs/pai_mnist1d_mat
"""
from __future__ import annotations

import argparse
import collections

import numpy as np

from lotto import reports


def _cell(values):
  if not values:
    return "-"
  return f"{100 * np.mean(values):.1f} +- {100 * np.std(values):.1f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--sweep", required=True, help="workdir of the prune_sweep")
  parser.add_argument("--mat", required=True, help="directory holding the MAT IMP runs")
  args = parser.parse_args()
  groups = collections.defaultdict(list)
  for r in reports.load_prune_results(args.sweep):
    groups[(r["method"], r["ablation"], round(r["target_density"], 6))].append(
        r["final_test_accuracy"])
  dense = []
  for run in reports.load_results(args.mat, "imp"):
    dense.append(run["levels"][0]["final_test_accuracy"])
    level = run["levels"][1]
    d = round(1.0 - run["fraction"], 6)
    groups[("magnitude after training", "retrain from theta_0", d)].append(
        level["final_test_accuracy"])
    for branch in run["branches"]:
      groups[("magnitude after training", "fine-tune theta_T", d)].append(
          branch["final_test_accuracy"])
  densities = sorted({k[2] for k in groups}, reverse=True)
  print(f"dense: {_cell(dense)} (n={len(dense)})\n")
  print("| method | ablation | " + " | ".join(f"{100 * d:g}%" for d in densities) + " |")
  print("|---|---|" + "---|" * len(densities))
  order = {"none": 0, "shuffle": 1, "reinit": 2, "invert": 3}
  for method, ablation in sorted({(k[0], k[1]) for k in groups},
                                 key=lambda t: (t[0] == "magnitude after training", t[0],
                                                order.get(t[1], 9), t[1])):
    cells = [_cell(groups.get((method, ablation, d), [])) for d in densities]
    print(f"| {method} | {ablation} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  main()
