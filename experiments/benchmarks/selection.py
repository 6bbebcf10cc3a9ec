"""One global selection over VGG-16-BN's 14.76M weights, and the alternatives to it.

  python experiments/benchmarks/selection.py [--repeats 5] [--dtype float32]

Scores are log-normal (7 decades), half the weights are candidates, k is 1 % of the
weights. Rows: lotto's `selection.select_global` (radix threshold + ties in flat order),
its parts, a full sort of the keys and `lax.top_k` (which needs a static k, so it
cannot serve the iterative loop, whose k is traced). Medians over repeats after one
compiling call.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core import selection
from lotto.models import create_model, init_variables


def _median_time(fn, args, repeats):
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32", help="float32 | float64")
  args = parser.parse_args()
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  model = create_model("vgg16_bn", 100)
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), (32, 32, 3))[0])
  prunable = masks_lib.select_prunable(shapes)
  rng = np.random.default_rng(0)
  scores = jax.tree.map(lambda s: jnp.asarray(rng.lognormal(0, 3, s.shape), args.dtype), shapes)
  masks = jax.tree.map(lambda s: jnp.asarray(rng.uniform(size=s.shape) < 0.5), shapes)
  flat = [(s.ravel(), m.ravel()) for s, m, f in zip(
      jax.tree.leaves(scores), jax.tree.leaves(masks), jax.tree.leaves(prunable)) if f]
  all_scores = jnp.concatenate([s for s, _ in flat])
  all_masks = jnp.concatenate([m for _, m in flat])
  keys = selection.sortable_keys(all_scores)
  k = int(0.01 * all_scores.size)
  count_type = jnp.int64 if args.dtype == "float64" else jnp.int32  # as top_k_mask counts
  rows = {
      "select_global": (jax.jit(lambda s, m, kk: selection.select_global(s, m, prunable, kk)),
                        (scores, masks, jnp.asarray(k))),
      "  order-preserving keys": (jax.jit(selection.sortable_keys), (all_scores,)),
      "  radix threshold": (jax.jit(selection._kth_largest_key),  # pylint: disable=protected-access
                            (keys, all_masks, jnp.asarray(k, count_type))),
      "  cumsum (ties, when needed)": (jax.jit(lambda m: jnp.cumsum(m, dtype=jnp.int32)),
                                       (all_masks,)),
      "full sort of the keys": (jax.jit(jnp.sort), (keys,)),
      "lax.top_k (static k)": (jax.jit(lambda s: jax.lax.top_k(s, k)), (all_scores,)),
  }
  print(f"{all_scores.size:,} {args.dtype} scores, k = {k:,}")
  for name, (fn, fn_args) in rows.items():
    print(f"{name:<30} {_median_time(fn, fn_args, args.repeats):>7.3f} s", flush=True)


if __name__ == "__main__":
  main()
