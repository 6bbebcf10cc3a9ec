"""Formulations of the condensed layer's three products, one layer at a time.

For a constant fan-in layer (indices I[out, k], values V[out, k], fan-out table P[in, F];
`lotto.sparse.condensed`) and a batch x[b, in], dy[b, out], milliseconds per call of
  forward      y[b, o] = sum_j V[o, j] x[b, I[o, j]]
  weight grad  dV[o, j] = sum_b dy[b, o] x[b, I[o, j]]
  input grad   dx[b, i] = sum over slots reading i of V * dy
by
  loop        lotto's: x^T rows gathered one slot at a time in a fori_loop (`condensed_ops`)
  all         every slot gathered at once from x[b, in] ([b, out, k]), then one contraction
  all_t       the same from x^T ([out, k, b], whole rows)
  segment     forward: products per slot, `segment_sum` by output (lotto.sparse.gather's way)
  scatter     input grad: scatter-add of V * dy into dx (what the fan-out table avoids)
  dense       x @ W, x^T @ dy, dy @ W^T on the dense kernel (the masked step's products)
Layers 784x4096 and 4096x4096 at density 1 % (k = 8, 41), batches 32, 128, 256; median of
--repeats calls after compilation.

  python experiments/benchmarks/condensed_kernels.py [--repeats 7] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.fanin import fan_in_count, fanin_mask
from lotto.sparse import condensed_ops
from lotto.sparse.condensed import condense, fanout_table

LAYERS = {"784x4096": (784, 4096), "4096x4096": (4096, 4096)}


def forward_all(x, indices, values):
  return jnp.einsum("bok,ok->bo", x[:, indices], values)


def forward_all_t(x, indices, values):
  return jnp.einsum("okb,ok->ob", x.T[indices], values).T


def forward_segment(x, indices, values):
  out, k = indices.shape
  products = x[:, indices.reshape(-1)] * values.reshape(-1)
  return jax.ops.segment_sum(products.T, jnp.repeat(jnp.arange(out), k), num_segments=out,
                             indices_are_sorted=True).T


def weight_grad_all(x, indices, dy):
  return jnp.einsum("bo,bok->ok", dy, x[:, indices])


def weight_grad_all_t(x, indices, dy):
  return jnp.einsum("ob,okb->ok", dy.T, x.T[indices])


def input_grad_all_t(dy, values, fanout):
  k = values.shape[1]
  flat = jnp.concatenate([values.reshape(-1), jnp.zeros(1, values.dtype)])
  dyt = jnp.concatenate([dy.T, jnp.zeros((1, dy.shape[0]), dy.dtype)])
  return jnp.einsum("ifb,if->ib", dyt[fanout // k], flat[fanout]).T


def input_grad_scatter(dy, values, indices, in_features):
  contributions = dy[:, :, None] * values[None]  # [b, out, k]
  return jnp.zeros((dy.shape[0], in_features), dy.dtype).at[:, indices].add(contributions)


def milliseconds(fn, args, repeats):
  fn = jax.jit(fn)
  jax.block_until_ready(fn(*args))
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append(time.perf_counter() - start)
  return 1e3 * statistics.median(samples)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--density", type=float, default=1.0, help="percent")
  parser.add_argument("--quick", action="store_true", help="4096x4096 at batch 128 only")
  args = parser.parse_args()
  layers = {"4096x4096": LAYERS["4096x4096"]} if args.quick else LAYERS
  batches = (128,) if args.quick else (32, 128, 256)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; density {args.density} %; "
        f"ms per call, median of {args.repeats}")
  for name, (fan_in, out) in layers.items():
    rng = np.random.default_rng(0)
    k = fan_in_count(args.density / 100, fan_in)
    mask = np.asarray(fanin_mask(jax.random.PRNGKey(0), (fan_in, out), k))
    kernel = rng.standard_normal((fan_in, out)).astype(np.float32) * mask
    layer = condense(kernel, mask)
    indices, values = layer.indices, layer.values
    fanout = fanout_table(indices, fan_in)
    dense = jnp.asarray(kernel)
    for batch in batches:
      x = jnp.asarray(rng.standard_normal((batch, fan_in)), jnp.float32)
      dy = jnp.asarray(rng.standard_normal((batch, out)), jnp.float32)
      xt, dyt = x.T, dy.T
      rows = {
          "forward": {
              "loop": (lambda x: condensed_ops._forward_t(x.T, indices, values).T, (x,)),
              "all": (lambda x: forward_all(x, indices, values), (x,)),
              "all_t": (lambda x: forward_all_t(x, indices, values), (x,)),
              "segment": (lambda x: forward_segment(x, indices, values), (x,)),
              "dense": (lambda x: x @ dense, (x,))},
          "weight grad": {
              "loop": (lambda xt, dyt: condensed_ops._weight_grad_t(xt, indices, dyt),
                       (xt, dyt)),
              "all": (lambda x, dy: weight_grad_all(x, indices, dy), (x, dy)),
              "all_t": (lambda x, dy: weight_grad_all_t(x, indices, dy), (x, dy)),
              "dense": (lambda x, dy: x.T @ dy, (x, dy))},
          "input grad": {
              "loop": (lambda dyt: condensed_ops._input_grad_t(dyt, values, fanout).T, (dyt,)),
              "all_t": (lambda dy: input_grad_all_t(dy, values, fanout), (dy,)),
              "scatter": (lambda dy: input_grad_scatter(dy, values, indices, fan_in), (dy,)),
              "dense": (lambda dy: dy @ dense.T, (dy,))},
      }
      for product, variants in rows.items():
        times = "  ".join(f"{v} {milliseconds(fn, a, args.repeats):8.2f}"
                          for v, (fn, a) in variants.items())
        print(f"{name:<10} k={k:<3} batch {batch:<4} {product:<12} {times}", flush=True)


if __name__ == "__main__":
  main()
