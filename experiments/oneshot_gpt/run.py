"""Runs the one-shot GPT study and writes its table (results.md, results.json) and plot.

  python experiments/oneshot_gpt/run.py [--workdir runs] [--seeds 0,1,2] [--summarize-only]

The dense GPT population (seeds 0, 1, 2) in <workdir>/oneshot_gpt/train; each one-shot run
in <workdir>/oneshot_gpt/oneshot/<method>_<setting>_seed<s> (`run_order`: the most telling
cells first); IMP and RigL in <workdir>/oneshot_gpt/
<imp_1|imp_2|rigl_0.5|rigl_0.2>. Every run is resumable: re-running skips finished ones.
"""
from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

import lotto

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "config.py")
SETTINGS = ("u50", "u60", "u70", "u80", "2:4", "4:8")
METHODS = ("magnitude", "wanda", "sparsegpt")
ROUTES = ("rigl,0.5", "imp,1", "rigl,0.2", "imp,2")
# Wanda's README, LLaMA-2-7B, WikiText-2 perplexity (Sun et al. 2023).
PUBLISHED = {"dense": 5.12, ("magnitude", "u50"): 14.89, ("sparsegpt", "u50"): 6.51,
             ("wanda", "u50"): 6.42, ("magnitude", "2:4"): 54.59, ("sparsegpt", "2:4"): 10.17,
             ("wanda", "2:4"): 11.02}


def oneshot_dir(root: str, method: str, setting: str, seed: int) -> str:
  return os.path.join(root, "oneshot", f"{method}_{setting.replace(':', '-')}_seed{seed}")


def run_order(seeds: tuple[int, ...]) -> list[tuple[int, str]]:
  """(seed, setting) in the order run, so that a run cut short has the most telling cells:
  the first seed at 50 %, 2:4 and 80 %, then 50 % and 2:4 (the published comparison) for
  the other seeds, then the remaining settings seed by seed."""
  head = [(seeds[0], s) for s in ("u50", "2:4", "u80")]
  head += [(seed, s) for seed in seeds[1:] for s in ("u50", "2:4")]
  return head + [(seed, s) for seed in seeds for s in SETTINGS if (seed, s) not in head]


def run_all(root: str, seeds: tuple[int, ...], routes: bool) -> None:
  if not (_read(os.path.join(root, "train")) or {}).get("complete"):
    lotto.run_job(lotto.load_config(CONFIG, "train"), os.path.join(root, "train"))
  for seed, setting in run_order(seeds):
    for method in METHODS:
      config = lotto.load_config(CONFIG, f"oneshot,{method},{setting},{seed}")
      config.oneshot.from_workdir = os.path.join(root, "train", f"seed_{seed}")
      print(f"oneshot {method} {setting} seed {seed}", flush=True)
      lotto.run_job(config, oneshot_dir(root, method, setting, seed))
  if routes:
    for route in ROUTES:
      lotto.run_job(lotto.load_config(CONFIG, route), os.path.join(root, route.replace(",", "_")))


def _read(path: str) -> dict | None:
  try:
    with open(os.path.join(path, "results.json"), encoding="utf-8") as handle:
      return json.load(handle)
  except (OSError, ValueError):
    return None


def _stat(values) -> str:
  return "-" if not values else f"{np.mean(values):.3f} +- {np.std(values):.3f}"


def collect(root: str) -> dict:
  """Per (method, setting): every (seed, draw) test perplexity; the dense runs; the routes."""
  dense = {s: _read(os.path.join(root, "train", f"seed_{s}")) for s in (0, 1, 2)}
  dense = {s: r for s, r in dense.items() if r}
  table = {}
  for method in METHODS:
    for setting in SETTINGS:
      values, seeds = [], set()
      for seed in dense:
        result = _read(oneshot_dir(root, method, setting, seed))
        if not result:
          continue
        draws = result.get("draws") or [result]
        values += [d["pruned_test_perplexity"] for d in draws]
        seeds.add(seed)
        table.setdefault((method, setting, "per_seed"), {})[seed] = [
            d["pruned_test_perplexity"] for d in draws]
      table[(method, setting)] = {"values": values, "seeds": sorted(seeds)}
  routes = {}
  for route in ROUTES:
    result = _read(os.path.join(root, route.replace(",", "_")))
    if result:
      routes[route] = result
  return {"dense": dense, "table": table, "routes": routes}


def _route_rows(routes: dict) -> list[dict]:
  rows = []
  for route, result in routes.items():
    if result.get("mode") == "imp":
      level = result["levels"][-1]
      steps = sum(r["steps"] - (0 if r["level"] == 0 else result.get("rewind_step", 100))
                  for r in result["levels"])
      wall = sum(r.get("wall_time_s", 0.0) for r in result["levels"])
      rows.append({"route": f"IMP, rewind 100 it, {len(result['levels']) - 1} level(s)",
                   "density": level["density"], "perplexity": level["final_test_perplexity"],
                   "bpc": level["final_test_bpc"], "train_steps": steps, "wall_s": wall})
    else:
      rows.append({"route": "RigL (sparse_train)", "density": result["density"],
                   "perplexity": result["final_test_perplexity"],
                   "bpc": result["final_test_bpc"], "train_steps": result["steps"],
                   "wall_s": result.get("wall_time_s", 0.0)})
  return rows


def summarize(root: str) -> str:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  data = collect(root)
  dense = data["dense"]
  dense_ppl = [r["final_test_perplexity"] for r in dense.values()]
  lines = ["# One-shot pruning of a character GPT: test perplexity", "",
           f"dense (seeds {sorted(dense)}): perplexity {_stat(dense_ppl)}, bpc "
           f"{_stat([r['final_test_bpc'] for r in dense.values()])}, loss "
           f"{_stat([r['final_test_loss'] for r in dense.values()])}, accuracy "
           f"{_stat([100 * r['final_test_accuracy'] for r in dense.values()])} %", "",
           "Test perplexity, mean +- std over training seeds x calibration draws (n):", "",
           "| setting | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
  for setting in SETTINGS:
    cells = []
    for method in METHODS:
      entry = data["table"][(method, setting)]
      cells.append(f"{_stat(entry['values'])} ({len(entry['values'])})" if entry["values"]
                   else "-")
    label = {"u50": "50 %", "u60": "60 %", "u70": "70 %", "u80": "80 %"}.get(setting, setting)
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  rows = _route_rows(data["routes"])
  if rows:
    lines += ["", "Training routes (seed 0): test perplexity and training cost", "",
              "| route | density | perplexity | bpc | training steps | wall time (s) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['route']} | {r['density']:.3f} | {r['perplexity']:.3f} | {r['bpc']:.3f} "
              f"| {r['train_steps']} | {r['wall_s']:.0f} |" for r in rows]
  summary = {"dense": {str(s): {k: r[k] for k in ("final_test_loss", "final_test_bpc",
                                                   "final_test_perplexity",
                                                   "final_test_accuracy", "wall_time_s")}
                       for s, r in dense.items()},
             "oneshot": {f"{m}/{s}": {"mean": float(np.mean(e["values"])),
                                       "std": float(np.std(e["values"])),
                                       "n": len(e["values"]), "seeds": e["seeds"],
                                       "per_seed": {str(k): v for k, v in data["table"].get(
                                           (m, s, "per_seed"), {}).items()}}
                         for (m, s, *rest), e in data["table"].items()
                         if not rest and e["values"]},
             "routes": rows, "published_llama2_7b": {
                 ("/".join(k) if isinstance(k, tuple) else k): v for k, v in PUBLISHED.items()}}
  with open(os.path.join(HERE, "results.json"), "w", encoding="utf-8") as handle:
    json.dump(summary, handle, indent=1)
  fig, ax = plt.subplots(figsize=(6.8, 4.4))
  for index, method in enumerate(METHODS):
    xs, ys, es = [], [], []
    for setting, density in (("u50", 0.5), ("u60", 0.4), ("u70", 0.3), ("u80", 0.2)):
      values = data["table"][(method, setting)]["values"]
      if values:
        xs.append(density), ys.append(np.mean(values)), es.append(np.std(values))
    line = ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
    for setting, marker, offset in (("2:4", "s", -0.012), ("4:8", "D", 0.012)):
      values = data["table"][(method, setting)]["values"]
      if values:
        ax.errorbar([0.5 + offset + 0.004 * (index - 1)], [np.mean(values)],
                    yerr=[np.std(values)], marker=marker, capsize=3, linestyle="none",
                    color=line[0].get_color(),
                    label=f"{method} {setting}" if index == 0 else None)
  if dense_ppl:
    ax.axhline(np.mean(dense_ppl), color="gray", linestyle=":",
               label=f"dense ({np.mean(dense_ppl):.2f})")
  ax.set_yscale("log")
  ax.invert_xaxis()
  ax.set_xlabel("density (fraction of attention and MLP weights kept); squares 2:4, "
                "diamonds 4:8")
  ax.set_ylabel("test perplexity (per character, log)")
  ax.set_title("One-shot pruning of a character GPT (shakespeare_char)")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(HERE, "oneshot_gpt.png"), dpi=120)
  plt.close(fig)
  with open(os.path.join(HERE, "results.md"), "w", encoding="utf-8") as handle:
    handle.write("\n".join(lines) + "\n")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="runs")
  parser.add_argument("--seeds", default="0,1,2", help="training seeds to prune")
  parser.add_argument("--no-routes", action="store_true", help="skip IMP and RigL")
  parser.add_argument("--summarize-only", action="store_true")
  args = parser.parse_args()
  root = os.path.join(args.workdir, "oneshot_gpt")
  jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  if not args.summarize_only:
    run_all(root, tuple(int(s) for s in args.seeds.split(",")), not args.no_routes)
  print(summarize(root))


if __name__ == "__main__":
  main()
