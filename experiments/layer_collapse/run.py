"""Layer collapse: the critical compression of each pruning method.

The critical compression of a method is the smallest compression c (density
10**-c) at which pruning empties some layer. It needs only the architecture and
its init (no training), so it runs on CPU. The critical compression is found
by bisection on c in [0, log10(N / L)] (the maximal compression: one weight
per layer) to within `--tol`, assuming collapse is monotone in c; "none" means
no layer collapsed even at the maximal compression.

SNIP and GraSP use a *synthetic* class-balanced batch (Gaussian inputs,
10 per class), as the data of VGG-16's CIFAR-100 is not on these machines.

  python experiments/layer_collapse/run.py --models lenet300,vgg16_bn [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto import pruning
from lotto.core import selection
from lotto.models import create_model
from lotto.core.scores import ScoringContext, make_scorer
from lotto.models import init_variables

MODELS = {"lenet300": ((28, 28, 1), 10), "vgg16_bn": ((32, 32, 3), 100)}
PUBLISHED_VGG16 = {"magnitude": 2.75, "random": 3.33, "snip": 3.58, "grasp": 3.58,
                   "synflow": 5.92}
METHODS = ("random", "magnitude", "snip", "grasp", "synflow")


def critical_compression(method, model, shape, classes, seed, tol):
  """(critical compression or None, maximal compression) of one method and seed."""
  params, stats = init_variables(model, jax.random.PRNGKey(seed), shape)
  prunable = masks_lib.select_prunable(params)
  ones = masks_lib.ones_like(params)
  _, total = masks_lib.count(ones, prunable)
  layers = sum(jax.tree.leaves(prunable))
  c_max = math.log10(total / layers)
  ctx = ScoringContext(model.apply, shape)
  key = jax.random.PRNGKey(seed + 1000)
  x = jax.random.normal(key, (10 * classes, *shape))
  y = jnp.repeat(jnp.arange(classes), 10)

  if pruning.default_iterations(method) == 1:
    # Single-shot: the scores do not depend on c; score once (the key of
    # pruning.prune's round 0), then only the selection runs per bisection step.
    scores = make_scorer(method, ctx)(params, ones, stats, (x, y), jax.random.fold_in(key, 0))
    prune_at = lambda c: selection.prune_to_density(scores, ones, prunable, 10.0 ** -c)
  else:
    prune_at = lambda c: pruning.prune(method, ctx, params, ones, prunable, 10.0 ** -c, key,
                                       batch_stats=stats, batch=(x, y))

  def collapses(c):
    start = time.perf_counter()
    collapsed = [r["name"] for r in masks_lib.layer_report(prune_at(c), prunable) if r["collapsed"]]
    print(f"  {method} c={c:.3f}: {'collapsed ' + ', '.join(collapsed) if collapsed else 'no layer empty'}"
          f" ({time.perf_counter() - start:.0f} s)", flush=True)
    return bool(collapsed)

  if not collapses(c_max):
    return None, c_max
  low, high = 0.0, c_max  # no collapse at low (dense), collapse at high
  while high - low > tol:
    mid = (low + high) / 2
    low, high = (low, mid) if collapses(mid) else (mid, high)
  return float(high), c_max


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="lenet300,vgg16_bn")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--seeds", default="0")
  parser.add_argument("--tol", type=float, default=0.05)
  parser.add_argument("--init", default="kaiming",
                      help="model init: kaiming (zero biases, as Synaptic-Flow's study), torch, flax")
  parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.json"))
  args = parser.parse_args()
  results = {}
  print(f"init {args.init}; SNIP and GraSP score a SYNTHETIC class-balanced batch (Gaussian "
        "inputs, 10 per class), not the real data", flush=True)
  for name in args.models.split(","):
    shape, classes = MODELS[name]
    model = create_model(name, classes, args.init)
    for method in args.methods.split(","):
      values = []
      for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        c, c_max = critical_compression(method, model, shape, classes, seed, args.tol)
        values.append(c)
        print(f"{name} {method} seed {seed}: critical compression "
              f"{'none' if c is None else f'{c:.2f}'} (max {c_max:.2f}; "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
      results[f"{name}/{method}"] = {"critical": values, "max": c_max, "init": args.init}
  with open(args.out, "w") as handle:
    json.dump(results, handle, indent=2)
  print(f"\n{'model/method':<22} {'critical c (per seed)':<24} {'max c':>6} {'published':>9}")
  for key, value in results.items():
    crit = ", ".join("none" if c is None else f"{c:.2f}" for c in value["critical"])
    published = PUBLISHED_VGG16.get(key.split("/")[1]) if key.startswith("vgg16") else None
    print(f"{key:<22} {crit:<24} {value['max']:>6.2f} {published or '':>9}")
  _plot(results, os.path.splitext(args.out)[0] + ".png")


def _plot(results, path):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  models = sorted({k.split("/")[0] for k in results})
  fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.5), squeeze=False)
  for ax, model in zip(axes[0], models):
    names, values, maxima = [], [], []
    for key, value in results.items():
      if key.startswith(model + "/"):
        names.append(key.split("/")[1])
        crit = [value["max"] if c is None else c for c in value["critical"]]
        values.append(float(np.mean(crit)))
        maxima.append(value["max"])
    bars = ax.bar(names, values, color="tab:blue")
    for bar, name in zip(bars, names):
      crit = results[f"{model}/{name}"]["critical"]
      text = "no collapse" if all(c is None for c in crit) else f"{bar.get_height():.2f}"
      ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                  ha="center", va="bottom", fontsize=8)
    published = [PUBLISHED_VGG16.get(n) for n in names] if model.startswith("vgg16") else []
    if any(p is not None for p in published):
      ax.scatter([n for n, p in zip(names, published) if p is not None],
                 [p for p in published if p is not None], color="tab:red", marker="x",
                 zorder=3, label="published (Tanaka et al.)")
    ax.axhline(maxima[0], color="k", linestyle="--", label="max (one weight/layer)")
    ax.set_ylim(0, maxima[0] * 1.15)
    ax.set_title(f"{model}: critical compression")
    ax.set_ylabel("log10(1 / density)")
    ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"plot: {path}")


if __name__ == "__main__":
  main()
