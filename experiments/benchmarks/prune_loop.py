"""Iterative SynFlow in `pruning.prune`'s compiled fori_loop: rounds and precisions
(float32 rescaled vs float64).

Each call re-jits (as `pruning.prune` does), so the difference between R and
R' rounds gives the per-round cost. `--dtypes` lists `prune.synflow_dtype`
values. When float64 is among them, "same" says whether each run's masks equal
float64's (same rounds); "min layer" is the fewest survivors of any
prunable layer (0: layer collapse).

  python experiments/benchmarks/prune_loop.py --model resnet20 --classes 10 --rounds 10,50
  python experiments/benchmarks/prune_loop.py --model vgg16_bn --classes 100 --rounds 100 \\
      --dtypes float32_rescaled,float64 --repeats 1

Same sitting with a PyTorch loop of our own (`--torch`, needs torch):

  python experiments/benchmarks/prune_loop.py --model vgg16_bn --classes 100 --rounds 100 \\
      --dtypes float32_rescaled,float64 --repeats 1 --torch

The collapse-free limit (100 rounds keep one weight in each of VGG-16's 14 layers, as
Tanaka et al. 2020 expect of iterative SynFlow with zero biases; "min layer" must be 1):

  python experiments/benchmarks/prune_loop.py --model vgg16_bn --classes 100 --rounds 100 \\
      --dtypes float32_rescaled,float64 --init kaiming --density max \\
      --repeats 1
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import torch_synflow
from lotto import pruning
from lotto.core import masks as masks_lib
from lotto.core.scores import ScoringContext
from lotto.models import create_model, init_variables


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--init", default="torch", help="torch | kaiming (zero biases) | flax")
  parser.add_argument("--rounds", default="10,50")
  parser.add_argument("--dtypes", default="float64",
                      help="comma list of float64 | float32_rescaled | float32")
  parser.add_argument("--density", default="0.01",
                      help="final density, or 'max': one weight per prunable layer")
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--torch", action="store_true",
                      help="then time torch_synflow.py's PyTorch loop (VGG-16-BN, float64)")
  args = parser.parse_args()
  shape = (32, 32, 3)
  model = create_model(args.model, args.classes, args.init)
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  prunable = masks_lib.select_prunable(params)
  total = masks_lib.count(masks_lib.ones_like(params), prunable)[1]
  layers = sum(jax.tree.leaves(prunable))
  density = layers / total if args.density == "max" else float(args.density)
  print(f"{'model':<10} {'dtype':<16} {'rounds':>6} {'seconds':>8} {'density':>10} "
        f"{'min layer':>9} {'same':>5}")
  dtypes = args.dtypes.split(",")
  for rounds in (int(r) for r in args.rounds.split(",")):
    runs = {}
    # float64 first, so every other precision is compared with it as it finishes
    for dtype in sorted(dtypes, key=lambda d: d != "float64"):
      ctx = ScoringContext(model.apply, shape, synflow_dtype=dtype)
      for _ in range(args.repeats):
        start = time.perf_counter()
        masks = pruning.prune("synflow", ctx, params, masks_lib.ones_like(params), prunable,
                              density, jax.random.PRNGKey(1), batch_stats=stats,
                              iterations=rounds)
        jax.block_until_ready(masks)
        seconds = time.perf_counter() - start
        runs[dtype] = masks
        fewest = min(r["surviving"] for r in masks_lib.layer_report(masks, prunable))
        same = "-" if "float64" not in runs or dtype == "float64" else str(all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(runs["float64"]))))
        print(f"{args.model:<10} {dtype:<16} {rounds:>6} {seconds:>8.2f} "
              f"{masks_lib.density(masks, prunable):>10.3g} {fewest:>9} {same:>5}", flush=True)
  if args.torch:
    for rounds in (int(r) for r in args.rounds.split(",")):
      result = torch_synflow.synflow_seconds(rounds, density)
      print("torch not installed" if result is None else
            f"PyTorch (torch_synflow.py, VGG-16-BN, float64, eager) {rounds} rounds: "
            f"{result[0]:.2f} s", flush=True)


if __name__ == "__main__":
  main()
