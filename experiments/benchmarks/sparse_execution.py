"""Sparse execution crossover: when do lotto's compressed kernels beat the masked dense model?

Latency (batch 1, microseconds per call, each call waited for) and throughput (batch 256,
thousand examples/s) of a model's forward for
  dense   the unpruned model, x @ W (what the masks are compared with at inference)
  masked  x @ (W * M), the mask multiplied inside the jitted forward (how lotto trains)
  bcoo, gather, block, nm, radix, condensed   `lotto.sparse.compress_mlp` with that kernel
at densities 50, 10, 3, 1, 0.3, 0.1 % for LeNet-300-100 (784-300-100-10), one 4096x4096
layer, and the 10x-wider LeNet (784-3000-1000-10), which also gets a row at the density of
its fitted RadiX-Net ('fit': N = 1000, radices (25, 40), 2.5 and 4 %, 3.34 % over both).
Every Dense kernel (the output layer too) keeps exactly round(d * size) weights. Masks per
kernel: bcoo, gather and nm (its (n, m) detected per layer: on an unstructured mask, m =
fan-in, a padded per-column layout) run a random unstructured mask; block a random mask of
whole tiles (the largest of 16, 8, 4, 2 dividing the layer) of the same density; radix
RadiX-Net hidden layers where the generator gives the density to 5 % (radices (r, r):
1/r = 50 and 10 %; the 4096 layer: radices (2, n / 2) widened, 2/n = 50, 3.1, 0.098 %;
'-' elsewhere) with the output layer by gather on its random mask; condensed a random
constant fan-in mask (k = max(1, round(d * fan_in)) inputs per output unit, so a layer's
density is k / fan_in: the inference form of `sparse.execution = "condensed"` training,
the output layer too). 'mem': the product would
build an array above 1 GiB (gather, bcoo, nm: batch x stored weights; radix: batch x
inputs x radix). Times: median of --repeats after compilation; the last columns give the
best sparse kernel's speed over masked and over dense (> 1, '*': sparse is faster).

  python experiments/benchmarks/sparse_execution.py [--repeats 5] [--quick]
      [--models lenet300,layer4096,wide_lenet] [--densities 50,10,3,1,0.3,0.1]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lotto import sparse
from lotto.topologies import fitted_radixnet, radixnet

MODELS = {"lenet300": (784, 300, 100, 10), "layer4096": (4096, 4096),
          "wide_lenet": (784, 3000, 1000, 10)}
KERNELS = ("bcoo", "gather", "block", "nm", "radix", "condensed")
MEMORY_CAP = 2 ** 30  # bytes of batch x nnz intermediates


def layer_names(widths) -> list[str]:
  return [f"hidden_{i}" for i in range(len(widths) - 2)] + ["output"]


def init_params(widths, rng) -> dict:
  return {name: {"kernel": (rng.standard_normal((a, b)) * math.sqrt(2 / a)).astype(np.float32),
                 "bias": (rng.standard_normal(b) * 0.01).astype(np.float32)}
          for name, a, b in zip(layer_names(widths), widths[:-1], widths[1:])}


def masks_of(layers: dict[str, np.ndarray]) -> dict:
  return {n: {"kernel": m, "bias": np.ones(m.shape[1], bool)} for n, m in layers.items()}


def random_mask(shape, density, rng) -> np.ndarray:
  flat = np.zeros(math.prod(shape), bool)
  flat[rng.permutation(flat.size)[:max(1, round(density * flat.size))]] = True
  return flat.reshape(shape)


def fanin_mask(shape, density, rng) -> np.ndarray:
  """Exactly k = max(1, round(density * fan_in)) random inputs per output unit."""
  k = max(1, round(density * shape[0]))
  order = np.argsort(rng.random(shape), axis=0)  # a random permutation of the inputs per column
  mask = np.zeros(shape, bool)
  np.put_along_axis(mask, order[:k], True, axis=0)
  return mask


def block_mask(shape, density, rng) -> np.ndarray:
  tile = next(t for t in (16, 8, 4, 2, 1) if shape[0] % t == 0 and shape[1] % t == 0)
  tiles = random_mask((shape[0] // tile, shape[1] // tile), density, rng)
  return np.repeat(np.repeat(tiles, tile, axis=0), tile, axis=1)


def radix_hidden(widths, density) -> list[np.ndarray] | None:
  """RadiX-Net masks for the hidden layers at `density` (to 5 %), else None."""
  if len(widths) == 2:  # one layer: the first layer of radices (2, n / 2) widened
    for size in (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048):
      if abs(2 / size - density) <= 0.05 * density and widths[0] % size == 0:
        block = widths[0] // size
        return radixnet([[2, size // 2]], [block, block, block])[:1]
    return None
  # Two hidden layers: radices (r, r), N = r^2 dividing the hidden widths, density 1 / r.
  r = round(1 / density)
  size = r * r
  if r < 2 or abs(1 / r - density) > 0.05 * density or any(w % size for w in widths[1:-1]):
    return None
  blocks = [math.ceil(widths[0] / size)] + [w // size for w in widths[1:-1]]
  layers = radixnet([[r, r]], blocks)
  layers[0] = layers[0][blocks[0] * size - widths[0]:]
  return layers


def intermediate_floats(layer, batch: int) -> int:
  """The largest array a compressed layer's product builds for `batch` inputs."""
  if isinstance(layer, sparse.RadixLayer):  # R shifted copies of the input
    return batch * layer.values.shape[0] * layer.values.shape[1] * layer.size
  if isinstance(layer, sparse.BlockLayer):  # gathered input slices and tile products
    return batch * layer.tiles.shape[0] * (layer.bh + layer.bw)
  if isinstance(layer, sparse.DenseLayer):
    return 0
  if isinstance(layer, sparse.KERNELS.get("condensed").layer_type):  # one (batch, out) sum
    return batch * layer.out_features
  return batch * layer.nnz  # gather, bcoo, nm: one product per stored weight


def masked_forward(params, masks, x):
  names = list(params)
  for i, name in enumerate(names):
    x = x @ (params[name]["kernel"] * masks[name]["kernel"]) + params[name]["bias"]
    x = jax.nn.relu(x) if i < len(names) - 1 else x
  return x


def dense_forward(params, x):
  names = list(params)
  for i, name in enumerate(names):
    x = x @ params[name]["kernel"] + params[name]["bias"]
    x = jax.nn.relu(x) if i < len(names) - 1 else x
  return x


def seconds_per_call(fn, args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # compile
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  calls = max(1, min(200, int(0.02 / max(time.perf_counter() - start, 1e-6))))
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      jax.block_until_ready(fn(*args))
    samples.append((time.perf_counter() - start) / calls)
  return statistics.median(samples)


def measure_row(widths, params, kernel_masks, batches, repeats, rng) -> dict:
  """{(kernel, batch): seconds or 'mem' or '-'} for the sparse kernels of one density."""
  out = {}
  for kernel in KERNELS:
    layers = kernel_masks.get(kernel)
    if layers is None:
      out.update({(kernel, b): "-" for b in batches})
      continue
    choice = {n: kernel for n in layers}
    if kernel == "radix":
      choice["output"] = "gather" if len(widths) > 2 else "radix"
    model = sparse.compress_mlp(params, masks_of(layers), choice)
    for batch in batches:
      if max(intermediate_floats(l, batch) for l in model.layers) * 4 > MEMORY_CAP:
        out[(kernel, batch)] = "mem"
        continue
      x = jnp.asarray(rng.standard_normal((batch, widths[0])).astype(np.float32))
      out[(kernel, batch)] = seconds_per_call(sparse.predict, (model, x), repeats)
  return out


def fmt(value, batch: int) -> str:
  if isinstance(value, str):
    return value
  return f"{value * 1e6:.0f}" if batch == 1 else f"{batch / value / 1e3:.1f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--densities", default="50,10,3,1,0.3,0.1", help="percent")
  parser.add_argument("--quick", action="store_true",
                      help="smoke run: LeNet-300-100 at 10 and 1 %%, batches 1 and 16, 2 repeats")
  args = parser.parse_args()
  models, densities = args.models.split(","), [float(d) / 100 for d in args.densities.split(",")]
  batches, repeats = (1, 256), args.repeats
  if args.quick:
    models, densities, batches, repeats = ["lenet300"], [0.1, 0.01], (1, 16), 2
  rng = np.random.default_rng(0)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device(s)); "
        f"median of {repeats}; batch {batches[0]}: microseconds per call (latency), batch "
        f"{batches[1]}: thousand examples/s (throughput)")
  head = "".join(f"{k:>10}" for k in ("dense", "masked", *KERNELS))
  print(f"{'model':<11} {'density %':>9} {'batch':>5}{head}  {'best sparse':>11} "
        f"{'x masked':>8} {'x dense':>8}")
  for model_name in models:
    widths = MODELS[model_name]
    params = init_params(widths, rng)
    names = layer_names(widths)
    shapes = {n: params[n]["kernel"].shape for n in names}
    base = {}
    for batch in batches:
      x = jnp.asarray(rng.standard_normal((batch, widths[0])).astype(np.float32))
      on_device = jax.tree.map(jnp.asarray, params)
      ones = jax.tree.map(jnp.asarray, masks_of({n: np.ones(s, bool) for n, s in shapes.items()}))
      base[("dense", batch)] = seconds_per_call(jax.jit(dense_forward), (on_device, x), repeats)
      base[("masked", batch)] = seconds_per_call(jax.jit(masked_forward), (on_device, ones, x),
                                                 repeats)  # the mask's values do not matter
    rows = [(d, None) for d in densities]
    if model_name == "wide_lenet" and not args.quick:
      rows.append((None, "fitted"))
    for density, special in rows:
      if special == "fitted":  # the 10x-wider RadiX LeNet itself: N = 1000, radices (25, 40)
        hidden = fitted_radixnet(widths[:-1])
        density = sum(m.sum() for m in hidden) / sum(m.size for m in hidden)
      else:
        hidden = radix_hidden(widths, density)
      unstructured = {n: random_mask(s, density, rng) for n, s in shapes.items()}
      kernel_masks = {"bcoo": unstructured, "gather": unstructured, "nm": unstructured,
                      "block": {n: block_mask(s, density, rng) for n, s in shapes.items()},
                      "condensed": {n: fanin_mask(s, density, rng) for n, s in shapes.items()}}
      if hidden is not None:
        kernel_masks["radix"] = dict(zip(names, hidden)) | (
            {"output": unstructured["output"]} if len(widths) > 2 else {})
      result = base | measure_row(widths, params, kernel_masks, batches, repeats, rng)
      for batch in batches:
        cells = "".join(f"{fmt(result[(k, batch)], batch):>10}" for k in ("dense", "masked",
                                                                        *KERNELS))
        timed = {k: result[(k, batch)] for k in KERNELS
                 if not isinstance(result[(k, batch)], str)}
        best = min(timed, key=timed.get)
        label = f"{density * 100:.3g}" + (" fit" if special else "")
        vs_masked = result[("masked", batch)] / timed[best]
        vs_dense = result[("dense", batch)] / timed[best]
        print(f"{model_name:<11} {label:>9} {batch:>5}{cells}  {best:>11} {vs_masked:>7.2f}"
              f"{'*' if vs_masked > 1 else ' '} {vs_dense:>7.2f}{'*' if vs_dense > 1 else ' '}",
              flush=True)
  print("x masked, x dense: the best sparse kernel's speed over each (* = sparse is faster)")

if __name__ == "__main__":
  main()
