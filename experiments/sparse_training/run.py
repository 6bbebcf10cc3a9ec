"""Runs a sparse-training study and writes its tables (results.md) and plot into its folder.

  python experiments/sparse_training/run.py --study oneshot_vs_iterative [--workdir runs]
  python experiments/sparse_training/run.py --study dst_lenet300
  python experiments/sparse_training/run.py --study dsd
  python experiments/sparse_training/run.py --study radixnet
  python experiments/sparse_training/run.py --study structured

Every variant of the study's config.py runs as its own lotto job in
<workdir>/<study>/<variant> (resumable: re-running skips finished cells);
`--summarize-only` rebuilds the tables and plot from the runs on disk.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re

import jax
import numpy as np

import lotto
from lotto import reports

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("lenet300_5k", "mnist1d_mlp")
STUDIES = {
    "oneshot_vs_iterative": [f"{m},{v}" for m in MODELS for v in ("dense", "iterative",
                                                                    "oneshot")],
    "dst_lenet300": ["dense", "static", "set", "rigl", "gmp", "imp"],
    # The ViT row of dst_lenet300 (its runs sit beside LeNet's): --study dst_vit.
    "dst_vit": ["vit_static", "vit_rigl", "vit_dense"],
    "dsd": [f"{m},{v}" for m in MODELS for v in ("dense", "dsd")],
    "radixnet": ["lenet300_5k,dense"] + [
        f"lenet300_5k,{v}{c}" for v in ("radix_10_10", "radix_5_20", "radix_4_25", "radix_2_50",
                                         "expander")
        for c in ("", "_control")] + ["mnist1d_mlp,dense"] + [
        f"mnist1d_mlp,{v}{c}" for v in ("radix_10_10", "expander") for c in ("", "_control")],
    # LeNet 10x wider (5.4M weights, ~4 min per run here): --study radixnet_wide, seed 0.
    "radixnet_wide": [f"lenet300_5k,{v}{c}" for v in ("wide_expander", "wide_radix")
                      for c in ("", "_control")],
    "structured": [f"{m},{method},{s}" for m in MODELS for method in ("synflow", "imp")
                   for s in ("unstructured", "2:4", "block:4x4")],
}
SEEDS = (0, 1, 2)
VIT_DESCRIPTION = ("7x7 patches (16 and a class token), width 64, 2 blocks, 4 heads; "
                   "105,098 parameters, 98,304 of them in the pruned attention and MLP kernels")
# Studies whose config.py, runs and results are another study's folder.
FOLDER = {"radixnet_wide": "radixnet", "dst_vit": "dst_lenet300"}


def run_study(study: str, root: str, seeds: tuple[int, ...] = SEEDS) -> None:
  """Runs every variant (train and IMP runs once per seed) with `lotto.run_job`."""
  path = os.path.join(HERE, "..", FOLDER.get(study, study), "config.py")
  for variant in STUDIES[study]:
    config = lotto.load_config(path, variant)
    workdir = os.path.join(root, _folder(variant))
    if config.mode in ("imp", "train"):
      for seed in seeds:
        config.seed = seed
        print(f"{study}/{variant} seed {seed}", flush=True)
        lotto.run_job(config, os.path.join(workdir, f"seed_{seed}"))
    else:
      print(f"{study}/{variant}", flush=True)
      lotto.run_job(config, workdir)


def _folder(variant: str) -> str:
  return variant.replace(",", "_").replace(":", "-")


def _cells(root: str, variant: str, mode: str = "sparse_train") -> list[dict]:
  """The finished runs of `variant` ([] when it has not run)."""
  path = os.path.join(root, _folder(variant))
  return reports.load_results(path, mode) if os.path.isdir(path) else []


def _stat(values) -> str:
  return f"{100 * np.mean(values):.2f} +- {100 * np.std(values):.2f}" if values else "-"


def _by_density(runs: list[dict], key: str = "final_test_accuracy") -> dict[float, list]:
  groups = collections.defaultdict(list)
  for r in runs:
    groups[round(r["target_density"], 6)].append(r[key])
  return groups


def _highest_sparsity_within(groups: dict, dense: float, points: float) -> str:
  ok = [d for d, v in groups.items() if 100 * (dense - np.mean(v)) <= points]
  return f"{100 * (1 - min(ok)):.0f} %" if ok else "none"


def summarize_oneshot(root: str, plt) -> str:
  lines = []
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, model in zip(axes, MODELS):
    dense = [r["final_test_accuracy"] for r in _cells(root, f"{model},dense")]
    curves = {v: _by_density(_cells(root, f"{model},{v}")) for v in ("iterative", "oneshot")}
    dense_mean = float(np.mean(dense))
    lines += [f"### {model}", "", f"dense: {_stat(dense)} (n = {len(dense)})", "",
              "| sparsity | iterative (GMP) | one-shot |", "|---|---|---|"]
    for d in sorted(curves["iterative"], reverse=True):
      lines.append(f"| {100 * (1 - d):.0f} % | {_stat(curves['iterative'][d])} | "
                   f"{_stat(curves['oneshot'].get(d, []))} |")
    for points in (0.5, 1.0):
      lines.append(f"| highest sparsity within {points} point of dense | "
                   f"{_highest_sparsity_within(curves['iterative'], dense_mean, points)} | "
                   f"{_highest_sparsity_within(curves['oneshot'], dense_mean, points)} |")
    lines.append("")
    for variant, groups in curves.items():
      ds = sorted(groups)
      ax.errorbar([1 - d for d in ds], [100 * np.mean(groups[d]) for d in ds],
                  [100 * np.std(groups[d]) for d in ds], marker="o", capsize=3, label=variant)
    ax.axhline(100 * dense_mean, color="gray", ls="--", label="dense")
    ax.set_xscale("logit")  # spreads 90-99 %, where the two schedules part
    ticks = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    ax.set_xticks(ticks, [f"{100 * t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(title=model, xlabel="sparsity (%)", ylabel="final test accuracy (%)")
    ax.legend()
  return _save(fig, plt, "oneshot_vs_iterative", lines)


def _committed_dst() -> tuple[dict, dict, list[float], dict]:
  """dst_lenet300's committed LeNet rows (results.json; their runs were not kept): method ->
  {density: (mean, std)}, dense (mean, std), the densities, IMP's actual level densities."""
  with open(os.path.join(HERE, "..", "dst_lenet300", "results.json"), encoding="utf-8") as handle:
    committed = json.load(handle)
  table = committed["tables"][0]
  targets = [float(c.rstrip(" %")) / 100 for c in table["columns"][1:]]
  methods = {row["method"]: {d: (row[c]["mean"] / 100, row[c]["std"] / 100)
                             for d, c in zip(targets, table["columns"][1:])}
             for row in table["rows"]}
  dense = committed["dense"]["all"]
  actual = {float(b) / 100: float(a) / 100 for a, b in re.findall(
      r"([\d.]+) % for ([\d.]+) %", committed["footnotes"][0])}
  return methods, (dense["mean"] / 100, dense["std"] / 100), targets, actual


def _mean_std(values) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def summarize_dst(root: str, plt) -> str:
  """LeNet-300-100's table from its runs, or its committed rows when they are not on disk;
  then the ViT rows (10 % density and dense) from runs/dst_lenet300/vit_*."""
  dense_runs = [r["final_test_accuracy"] for r in _cells(root, "dense")]
  if dense_runs:
    groups = {m: _by_density(_cells(root, m)) for m in ("static", "set", "rigl", "gmp")}
    imp = collections.defaultdict(list)  # target density -> tickets at the nearest level
    targets = sorted(groups["rigl"], reverse=True)
    actual = {}
    for run in reports.load_results(os.path.join(root, "imp"), "imp"):
      for target in targets:
        level = min(run["levels"], key=lambda l: abs(np.log(l["density"] / target)))
        imp[target].append(level["final_test_accuracy"])
        actual[target] = level["density"]
    groups["IMP ticket"] = imp
    methods = {m: {d: _mean_std(v) for d, v in g.items() if v} for m, g in groups.items()}
    dense, n_dense = _mean_std(dense_runs), len(dense_runs)
  else:
    methods, dense, targets, actual = _committed_dst()
    n_dense = 3
  cell = lambda ms: f"{100 * ms[0]:.2f} +- {100 * ms[1]:.2f}" if ms else "-"  # noqa: E731
  header = " | ".join(f"{100 * d:g} %" for d in targets)
  lines = [f"dense: {cell(dense)} (n = {n_dense})", "", f"| method | {header} |",
           "|---|" + "---|" * len(targets)]
  for name, values in methods.items():
    lines.append(f"| {name} | " + " | ".join(cell(values.get(d)) for d in targets) + " |")
  if actual:
    lines += ["", "IMP ticket columns use the level nearest each density: " + ", ".join(
        f"{100 * actual[d]:.2f} % for {100 * d:g} %" for d in targets)]
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, values in methods.items():
    ds = sorted(values)
    xs = [100 * (actual[d] if name == "IMP ticket" else d) for d in ds]  # IMP: its levels
    ax.errorbar(xs, [100 * values[d][0] for d in ds], [100 * values[d][1] for d in ds],
                marker="o", capsize=3, label=name)
  ax.axhline(100 * dense[0], color="gray", ls="--", label="dense")
  vit = {v: [r["final_test_accuracy"] for r in _cells(root, f"vit_{v}")]
         for v in ("dense", "static", "rigl")}
  if any(vit.values()):
    lines += ["", f"ViT ({VIT_DESCRIPTION}), final test accuracy (%), mean +- std over "
              f"seeds:", "", "| ViT | 10 % | 100 % (dense) |", "|---|---|---|"]
    for name in ("static", "rigl"):
      lines.append(f"| ViT {name} | {_stat(vit[name])} (n = {len(vit[name])}) | - |")
    lines.append(f"| ViT dense | - | {_stat(vit['dense'])} (n = {len(vit['dense'])}) |")
    for offset, (name, marker) in zip((0.97, 1.03), (("static", "s"), ("rigl", "^"))):
      if vit[name]:  # side by side at 10 %
        ax.errorbar([10 * offset], [100 * np.mean(vit[name])], [100 * np.std(vit[name])],
                    marker=marker, ls="none", capsize=3, color="k" if name == "rigl" else
                    "dimgray", label=f"ViT {name}")
    if vit["dense"]:
      ax.axhline(100 * np.mean(vit["dense"]), color="k", ls=":", label="ViT dense")
  ax.set(xscale="log", xlabel="density (%)", ylabel="final test accuracy (%)",
         title="LeNet-300-100 and a small ViT on mnist_5k")
  ax.set_xticks([1, 2, 5, 10], ["1", "2", "5", "10"])
  ax.minorticks_off()
  ax.legend(fontsize=7)
  return _save(fig, plt, "dst_lenet300", lines)


def summarize_dsd(root: str, plt) -> str:
  lines = ["| model | dense | DSD: after dense phase | after sparse phase | after final dense "
           "phase |", "|---|---|---|---|---|"]
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, model in zip(axes, MODELS):
    dense_runs, dsd_runs = _cells(root, f"{model},dense"), _cells(root, f"{model},dsd")
    dense = [r["final_test_accuracy"] for r in dense_runs]
    phases = collections.defaultdict(list)
    for run in dsd_runs:
      for phase in run["phases"]:
        phases[phase["phase"]].append(phase["test_accuracy"])
    lines.append(f"| {model} | {_stat(dense)} | {_stat(phases['dense'])} | "
                 f"{_stat(phases['sparse'])} | {_stat(phases['dense_again'])} |")
    for label, runs in (("dense", dense_runs), ("DSD", dsd_runs)):
      if not runs:
        continue
      steps = [h["step"] for h in runs[0]["history"]]
      curves = np.array([[h["test_accuracy"] for h in r["history"]] for r in runs])
      ax.plot(steps, 100 * curves.mean(axis=0), label=label)
      ax.fill_between(steps, 100 * curves.min(axis=0), 100 * curves.max(axis=0), alpha=0.2)
    for phase in (dsd_runs[0]["phases"][:2] if dsd_runs else []):
      ax.axvline(phase["step"], color="gray", ls=":")
    ax.set(title=model, xlabel="step", ylabel="test accuracy (%) (mean, min-max over seeds)")
    ax.legend()
  return _save(fig, plt, "dsd", lines)


def summarize_radixnet(root: str, plt) -> str:
  lines = ["| model | variant | density (%) | hidden-layer connections | final test accuracy "
           "(%) | random control, same counts (%) |", "|---|---|---|---|---|---|"]
  panels = collections.defaultdict(list)  # model -> [(label, chosen accs, control accs)]
  dense = {}
  for variant in STUDIES["radixnet"] + STUDIES["radixnet_wide"]:
    if variant.endswith("_control"):
      continue
    model, name = variant.split(",")
    runs = _cells(root, variant, "train")
    if not runs:
      continue
    acc = [r["final_test_accuracy"] for r in runs]
    control = [r["final_test_accuracy"] for r in _cells(root, f"{variant}_control", "train")]
    connections = _hidden_connections(runs[0])
    lines.append(f"| {model} | {name} | {100 * runs[0]['density']:.2f} | {connections:,} | "
                 f"{_stat(acc)} (n = {len(acc)}) | {_stat(control)} |")
    if name == "dense":
      dense[model] = acc
    else:
      panels[model].append((f"{name}\n{connections / 1000:.1f}k", acc, control))
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
  for ax, (model, bars) in zip(axes[0], panels.items()):
    x = np.arange(len(bars))
    for offset, index, color, label in ((-0.2, 1, "C0", "RadiX-Net / expander"),
                                        (0.2, 2, "C1", "random, same per-layer counts")):
      ax.bar(x + offset, [100 * np.mean(b[index]) if b[index] else 0 for b in bars], 0.4,
             yerr=[100 * np.std(b[index]) if b[index] else 0 for b in bars], color=color,
             capsize=3, label=label)
    if model in dense:
      ax.axhline(100 * np.mean(dense[model]), color="gray", ls="--", label="dense")
    values = [100 * np.mean(v) for b in bars for v in b[1:] if v]
    ax.set_ylim(min(values) - 2, max(values + [100 * np.mean(dense.get(model, [0]))]) + 1)
    ax.set_xticks(x, [b[0] for b in bars], fontsize=7, rotation=25, ha="right")
    ax.set(title=model, ylabel="final test accuracy (%)",
           xlabel="variant, hidden-layer connections")
    ax.legend(fontsize=7, loc="lower right")
  return _save(fig, plt, "radixnet", lines)


def _hidden_connections(run: dict) -> int:
  """Surviving weights of the hidden layers (the output layer is dense in every variant)."""
  with open(os.path.join(run["path"], "config.json"), encoding="utf-8") as handle:
    config = json.load(handle)
  widths = (300, 100) if config["model"]["name"] == "lenet300" else tuple(config["model"]["widths"])
  fans = [784 if config["data"]["name"] == "mnist_5k" else 40, *widths]
  return sum(round(run["layer_densities"][f"hidden_{i}/kernel"] * a * b)
             for i, (a, b) in enumerate(zip(fans[:-1], fans[1:])))


def summarize_structured(root: str, plt) -> str:
  lines = []
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, model in zip(axes, MODELS):
    lines += [f"### {model}", "", "| method | structure | " + " | ".join(
        f"{100 * d:g} %" for d in (0.5, 0.25, 0.125, 0.0625)) + " |", "|---|---|" + "---|" * 4]
    for method, style in (("imp", "-"), ("synflow", "--")):
      for index, structure in enumerate(("unstructured", "2:4", "block:4x4")):
        variant = f"{model},{method},{structure}"
        groups = collections.defaultdict(list)
        if method == "imp":
          for run in _cells(root, variant, "imp"):
            for level in run["levels"][1:]:
              groups[round(level["density"], 3)].append(level["final_test_accuracy"])
        else:
          for run in reports.load_prune_results(os.path.join(root, _folder(variant))):
            groups[round(run["density"], 3)].append(run["final_test_accuracy"])
        ds = sorted(groups, reverse=True)
        lines.append(f"| {method} | {structure} | " + " | ".join(_stat(groups[d]) for d in ds)
                     + " |")
        if ds:
          ax.errorbar([100 * d for d in ds], [100 * np.mean(groups[d]) for d in ds],
                      [100 * np.std(groups[d]) for d in ds], ls=style, marker="o", capsize=3,
                      color=f"C{index}", label=f"{method} {structure}")
    lines.append("")
    ax.set(xscale="log", title=model, xlabel="density of the hidden layers' weights (%)",
           ylabel="final test accuracy (%)")
    ax.set_xticks([6.25, 12.5, 25, 50], ["6.25", "12.5", "25", "50"])
    ax.minorticks_off()
    ax.legend(fontsize=7)
  return _save(fig, plt, "structured", lines)


def _save(fig, plt, study: str, lines: list[str]) -> str:
  folder = os.path.join(HERE, "..", study)
  with open(os.path.join(folder, "results.md"), "w", encoding="utf-8") as handle:
    handle.write("\n".join(lines) + "\n")
  if fig is not None:
    fig.tight_layout()
    fig.savefig(os.path.join(folder, f"{study}.png"), dpi=120)
    plt.close(fig)
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--study", required=True, choices=sorted(STUDIES))
  parser.add_argument("--workdir", default="runs")
  parser.add_argument("--summarize-only", action="store_true")
  parser.add_argument("--seeds", default="0,1,2", help="seeds of the train and imp runs")
  args = parser.parse_args()
  root = os.path.join(args.workdir, FOLDER.get(args.study, args.study))
  # Cells of one variant differ only in seed (data and init are arguments, not constants
  # of the compiled program): a persistent compilation cache compiles each program once.
  jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  if not args.summarize_only:
    run_study(args.study, root, tuple(int(x) for x in args.seeds.split(",")))
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  summary = {"oneshot_vs_iterative": summarize_oneshot, "dst_lenet300": summarize_dst,
             "dst_vit": summarize_dst,
             "dsd": summarize_dsd, "radixnet": summarize_radixnet,
             "radixnet_wide": summarize_radixnet,
             "structured": summarize_structured}[args.study]
  print(summary(root, plt))


if __name__ == "__main__":
  main()
