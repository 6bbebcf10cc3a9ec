"""Iterative SynFlow: one compiled fori_loop vs one dispatched compiled round per round.

Each call re-jits (as `pruning.prune` does), so the difference between R and
R' rounds gives the per-round cost:

  python experiments/benchmarks/prune_loop.py --model resnet20 --classes 10 --rounds 10,50
  python experiments/benchmarks/prune_loop.py --model vgg16_bn --classes 100 --rounds 100 \\
      --loops dispatch --repeats 1
"""
from __future__ import annotations

import argparse
import time

import jax

from lotto.core import masks as masks_lib
from lotto import pruning
from lotto.models import create_model
from lotto.core.scores import ScoringContext
from lotto.models import init_variables


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--rounds", default="10,50")
  parser.add_argument("--loops", default="fori,dispatch")
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  shape = (32, 32, 3)
  model = create_model(args.model, args.classes, "torch")
  params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
  prunable = masks_lib.select_prunable(params)
  ctx = ScoringContext(model.apply, shape)
  print(f"{'model':<10} {'loop':<9} {'rounds':>6} {'seconds':>8} {'density':>8}")
  for rounds in (int(r) for r in args.rounds.split(",")):
    for loop in args.loops.split(","):
      for _ in range(args.repeats):
        start = time.perf_counter()
        masks = pruning.prune("synflow", ctx, params, masks_lib.ones_like(params), prunable,
                              0.01, jax.random.PRNGKey(1), batch_stats=stats,
                              iterations=rounds, loop=loop)
        jax.block_until_ready(masks)
        print(f"{args.model:<10} {loop:<9} {rounds:>6} {time.perf_counter() - start:>8.2f} "
              f"{masks_lib.density(masks, prunable):>8.4f}", flush=True)


if __name__ == "__main__":
  main()
