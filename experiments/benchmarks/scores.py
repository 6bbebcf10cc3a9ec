"""Time to compute each pruning score, one global selection, and full SynFlow.

  python experiments/benchmarks/scores.py [--repeats 5] [--synflow-rounds 100]

LeNet-300-100 (MNIST shapes), ResNet-20 and VGG-16-BN (CIFAR-100 output,
14.76M weights); data-dependent scores use a synthetic class-balanced batch of
10 examples per class. Times are medians over repeats after one compiling call.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from lotto.core import masks as masks_lib
from lotto import pruning
from lotto.core import selection
from lotto.models import create_model
from lotto.core.scores import SCORES, ScoringContext, make_scorer
from lotto.models import init_variables

MODELS = {"lenet300": ((28, 28, 1), 10), "resnet20": ((32, 32, 3), 10),
          "vgg16_bn": ((32, 32, 3), 100)}


def _median_time(fn, repeats):
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--synflow-rounds", type=int, default=100)
  parser.add_argument("--models", default=",".join(MODELS))
  args = parser.parse_args()
  methods = SCORES.names()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; seconds, median of "
        f"{args.repeats}")
  print(f"{'model':<9} " + " ".join(f"{m:>10}" for m in methods) + f" {'select':>8}")
  for name in args.models.split(","):
    shape, classes = MODELS[name]
    model = create_model(name, classes)
    params, stats = init_variables(model, jax.random.PRNGKey(0), shape)
    masks = masks_lib.ones_like(params)
    prunable = masks_lib.select_prunable(params)
    ctx = ScoringContext(model.apply, shape)
    x = jax.random.normal(jax.random.PRNGKey(1), (10 * classes, *shape))
    y = jnp.repeat(jnp.arange(classes), 10)
    row = []
    for method in methods:
      scorer = make_scorer(method, ctx)
      row.append(_median_time(
          lambda: scorer(params, masks, stats, (x, y), jax.random.PRNGKey(2)), args.repeats))
    scores = jax.tree.map(jnp.abs, params)
    select = jax.jit(lambda s, m: selection.select_global(s, m, prunable, 1000))
    row.append(_median_time(lambda: select(scores, masks), args.repeats))
    print(f"{name:<9} " + " ".join(f"{t:>10.4f}" for t in row), flush=True)
    if name == "vgg16_bn":
      start = time.perf_counter()
      out = pruning.prune("synflow", ctx, params, masks, prunable, 1e-3, jax.random.PRNGKey(3),
                          batch_stats=stats, iterations=args.synflow_rounds)
      jax.block_until_ready(out)
      print(f"full {args.synflow_rounds}-round SynFlow prune of VGG-16-BN to density 1e-3 "
            f"(incl. compile): {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
  main()
