"""Would condensed (constant fan-in, gather-based) convolutions beat XLA's dense conv on CPU?

One 3x3 conv, 64 -> 64 channels, 32x32, SAME, batch 32 (float32), with every output
channel keeping k = max(1, round(d * 576)) of its 3 * 3 * 64 inputs (`lotto.core.fanin`),
at d = 10, 3, 1 %. Milliseconds per call (median of --repeats, after compilation) of
  dense       XLA's conv, forward + input and weight gradients (`jax.grad`)
  masked      the same with the kernel times its mask (what lotto trains today)
  im2col      9 shifted slices of the padded input as a (576, H*W*B) feature-major matrix,
              then `condensed_dense_t` (gather-only VJP): forward + both gradients; the
              slices' own VJP folds the input gradient back (col2im)
  im2col only the 9 slices and their VJP alone
  window fwd  forward only, without im2col: per slot, one dynamic window of the padded input
              per output channel (a gather of whole (H, W, B) windows), accumulated
Each condensed result is checked against the masked dense conv. Condensed convolutions are
not built in lotto: this script is the evidence for that decision (BUILD_NOTES.md).

  python experiments/benchmarks/condensed_conv.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.fanin import fan_in_count, fanin_mask
from lotto.sparse.condensed import condense, fanout_table
from lotto.sparse.condensed_ops import condensed_dense_t

B, H, W, C, O = 32, 32, 32, 64, 64
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def milliseconds(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append(time.perf_counter() - start)
  return statistics.median(samples) * 1e3


def conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=DIMENSIONS)


def im2col_t(x):
  """(9 * C, H * W * B): rows in the kernel's (kh, kw, cin) order, columns feature-major."""
  padded = jnp.pad(x.transpose(3, 1, 2, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))
  return jnp.concatenate([padded[:, dh:dh + H, dw:dw + W, :].reshape(C, -1)
                          for dh in range(3) for dw in range(3)], axis=0)


def window_forward(starts, k):
  """Forward by window gathers: y^T (O, H, W, B) = sum_j V[:, j] * window(slot j)."""

  def forward(x, values_t):
    padded = jnp.pad(x.transpose(3, 1, 2, 0), ((0, 0), (1, 1), (1, 1), (0, 0)))

    def window(start):
      return jax.lax.dynamic_slice(padded, (start[0], start[1], start[2], 0), (1, H, W, B))[0]

    def body(j, acc):
      return acc + jax.vmap(window)(starts[j]) * values_t[j][:, None, None, None]

    return jax.lax.fori_loop(0, k, body, jnp.zeros((O, H, W, B)), unroll=2)

  return jax.jit(forward)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  repeats = parser.parse_args().repeats
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (B, H, W, C))
  g = jax.random.normal(jax.random.fold_in(key, 1), (B, H, W, O))
  gt = g.transpose(3, 1, 2, 0).reshape(O, -1)
  kernel = jax.random.normal(jax.random.fold_in(key, 2), (3, 3, C, O)) * 0.05

  def loss(x, kernel):
    return (conv(x, kernel) * g).sum()

  dense = jax.jit(jax.grad(loss, argnums=(0, 1)))
  forward = jax.jit(conv)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; conv 3x3 {C}->{O}, {H}x{W}, "
        f"batch {B}; ms per call, median of {repeats}")
  print(f"dense: forward + gradients {milliseconds(dense, (x, kernel), repeats):.1f}, "
        f"forward {milliseconds(forward, (x, kernel), repeats):.1f}")
  columns = jax.jit(jax.grad(lambda x: (im2col_t(x) ** 2).sum()))
  print(f"im2col only (slices and their VJP): {milliseconds(columns, (x,), repeats):.1f}")
  print(f"{'density':>7} {'k':>3} {'masked':>7} {'im2col':>7} {'window fwd':>10}")
  for density in (0.1, 0.03, 0.01):
    k = fan_in_count(density, 9 * C)
    mask = np.asarray(fanin_mask(jax.random.fold_in(key, 3), (3, 3, C, O), k))
    layer = condense(np.asarray(kernel).reshape(9 * C, O), mask.reshape(9 * C, O))
    table = fanout_table(layer.indices, 9 * C)

    def condensed_loss(x, values, layer=layer, table=table):
      return (condensed_dense_t(im2col_t(x), layer.indices, values, table) * gt).sum()

    condensed = jax.jit(jax.grad(condensed_loss, argnums=(0, 1)))
    masked = jax.jit(jax.grad(lambda x, kk, m=mask: loss(x, kk * m), argnums=(0, 1)))
    expected = masked(x, kernel)[0]
    np.testing.assert_allclose(condensed(x, layer.values)[0], expected, rtol=1e-3, atol=1e-3)
    inputs = np.asarray(layer.indices)
    starts = np.stack([inputs % C, inputs // (3 * C), (inputs // C) % 3], -1)  # c, dh, dw
    windows = window_forward(jnp.asarray(starts.transpose(1, 0, 2), jnp.int32), k)
    np.testing.assert_allclose(windows(x, layer.values.T),
                               forward(x, kernel * mask).transpose(3, 1, 2, 0),
                               rtol=1e-3, atol=1e-3)
    print(f"{density:>7.0%} {k:>3} {milliseconds(masked, (x, kernel), repeats):>7.1f} "
          f"{milliseconds(condensed, (x, layer.values), repeats):>7.1f} "
          f"{milliseconds(windows, (x, layer.values.T), repeats):>10.1f}", flush=True)


if __name__ == "__main__":
  main()
