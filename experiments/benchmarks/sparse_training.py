"""Sparse training speed: condensed constant fan-in layers vs the masked and the dense step.

Train steps/s (Adam, softmax cross-entropy, synthetic data, one jitted step per call, the
state donated) of the ReLU MLPs 784-3000-1000-10 and 784-4096-4096-10 with every layer at
density d (10, 3, 1, 0.3 %; constant fan-in masks, k = max(1, round(d * fan_in)) inputs per
unit, `lotto.core.fanin`), at batches 32, 128, 256:
  condensed  `lotto.sparse.condensed_train` (values and indices per unit, gather-only VJP)
  masked     the dense kernel times the mask inside the jitted step (lotto's way today)
  dense      the unpruned model (the same at every density)
and, when `import sparseprop, torch` works (`pip install torch==2.13.0 pybind11 scipy`, then
`pip install --no-build-isolation sparseprop`: its build needs torch and pybind11), in the
same run:
  sparseprop SparseProp's SparseLinear layers (Nikdan et al., ICML 2023), the same masks
  torch      the dense PyTorch model
Memory: bytes of params plus optimizer state (and the condensed layers' indices and
fan-out tables; the masked step's bool masks). Times: median over --repeats of --steps
steps each, after a compiled warm-up; the methods are timed round-robin per cell, so drift
in the machine's speed hits all of them. Figures move by tens of % on shared machines.

  python experiments/benchmarks/sparse_training.py [--repeats 3] [--steps 10] [--quick]
      [--models wide_lenet,mlp4096] [--densities 10,3,1,0.3] [--batches 32,128,256]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lotto.core.fanin import fan_in_count, fanin_mask
from lotto.sparse import condensed_train

MODELS = {"wide_lenet": (784, 3000, 1000, 10), "mlp4096": (784, 4096, 4096, 10)}
LR = 1e-3


def init(widths, density, seed=0):
  """Kaiming-normal kernels, zero biases and constant fan-in masks (numpy)."""
  rng = np.random.default_rng(seed)
  kernels = [(rng.standard_normal((a, b)) * math.sqrt(2 / a)).astype(np.float32)
             for a, b in zip(widths[:-1], widths[1:])]
  biases = [np.zeros(b, np.float32) for b in widths[1:]]
  masks = [np.asarray(fanin_mask(jax.random.PRNGKey(seed + i), w.shape,
                                 fan_in_count(density, w.shape[0])))
           for i, w in enumerate(kernels)]
  return kernels, biases, masks


def nbytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _dense_logits(params, x, masks=None):
  for i, (w, b) in enumerate(params):
    x = x @ (w if masks is None else w * masks[i]) + b
    x = jax.nn.relu(x) if i < len(params) - 1 else x
  return x


def jax_runners(widths, density, batch, with_dense):
  """{method: (run(steps) -> None, bytes)} for the JAX steps of one cell."""
  kernels, biases, masks = init(widths, density)
  tx = optax.adam(LR)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((batch, widths[0])), jnp.float32)
  y = jnp.asarray(rng.integers(0, widths[-1], batch), jnp.int32)
  runners = {}

  params, structure = condensed_train.condense_mlp(kernels, biases, masks)
  condensed = [condensed_train.init_state(params, tx)]
  step = jax.jit(condensed_train.make_train_step(tx), donate_argnums=0)

  def run_condensed(steps):
    for _ in range(steps):
      condensed[0], loss = step(condensed[0], structure, x, y)
    jax.block_until_ready(loss)

  runners["condensed"] = (run_condensed, nbytes(condensed[0]) + nbytes(structure))

  mask_arrays = [jnp.asarray(m) for m in masks]

  def masked_step(state, x, y):
    params, opt = state
    grads = jax.grad(lambda p: _cross_entropy(_dense_logits(p, x, mask_arrays), y))(params)
    grads = [(g * m, gb) for (g, gb), m in zip(grads, mask_arrays)]
    updates, opt = tx.update(grads, opt, params)
    params = optax.apply_updates(params, updates)
    return [(w * m, b) for (w, b), m in zip(params, mask_arrays)], opt

  def dense_step(state, x, y):
    params, opt = state
    grads = jax.grad(lambda p: _cross_entropy(_dense_logits(p, x), y))(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  chosen = [("masked", masked_step)] + ([("dense", dense_step)] if with_dense else [])
  for name, fn in chosen:  # each its own arrays: the steps donate them
    dense_params = [(jnp.asarray(w * m), jnp.asarray(b))
                    for w, b, m in zip(kernels, biases, masks)]
    state = [(dense_params, tx.init(dense_params))]
    jitted = jax.jit(fn, donate_argnums=0)

    def run(steps, state=state, jitted=jitted):
      for _ in range(steps):
        state[0] = jitted(state[0], x, y)
      jax.block_until_ready(state[0])

    extra = nbytes(mask_arrays) if name == "masked" else 0
    runners[name] = (run, nbytes(state[0]) + extra)
  return runners


def torch_runners(widths, density, batch, with_dense):
  """{method: (run, None)} for SparseProp and dense PyTorch, or {} without them."""
  try:
    import torch
    from sparseprop.modules import SparseLinear
  except ImportError:
    return {}
  kernels, biases, masks = init(widths, density)
  rng = np.random.default_rng(1)
  x = torch.from_numpy(rng.standard_normal((batch, widths[0])).astype(np.float32))
  y = torch.from_numpy(rng.integers(0, widths[-1], batch))

  def model(sparse):
    layers = []
    for i, (w, b, m) in enumerate(zip(kernels, biases, masks)):
      weight = torch.from_numpy(np.ascontiguousarray((w * m).T))  # torch: (out, in)
      if sparse:
        layer = SparseLinear(weight, torch.nn.Parameter(torch.from_numpy(b.copy())))
      else:
        layer = torch.nn.Linear(*w.shape)
        with torch.no_grad():
          layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
          layer.bias.copy_(torch.from_numpy(b))
      layers += [layer] + ([torch.nn.ReLU()] if i < len(kernels) - 1 else [])
    return torch.nn.Sequential(*layers)

  runners = {}
  for name, sparse in [("sparseprop", True)] + ([("torch", False)] if with_dense else []):
    net = model(sparse)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)

    def run(steps, net=net, optimizer=optimizer):
      for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    runners[name] = (run, None)
  return runners


def measure(widths, density, batch, steps, repeats, with_dense, use_torch):
  """({method: median steps/s}, {method: bytes}) of one cell."""
  runners = jax_runners(widths, density, batch, with_dense)
  if use_torch:
    runners.update(torch_runners(widths, density, batch, with_dense))
  for run, _ in runners.values():
    run(2)  # compile / warm up
  rates = {name: [] for name in runners}
  for _ in range(repeats):  # round-robin
    for name, (run, _) in runners.items():
      start = time.perf_counter()
      run(steps)
      rates[name].append(steps / (time.perf_counter() - start))
  return ({n: statistics.median(r) for n, r in rates.items()},
          {n: b for n, (_, b) in runners.items() if b is not None})


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--models", default="wide_lenet,mlp4096")
  parser.add_argument("--densities", default="10,3,1,0.3", help="percent")
  parser.add_argument("--batches", default="32,128,256")
  parser.add_argument("--no-torch", action="store_true", help="skip SparseProp and PyTorch")
  parser.add_argument("--quick", action="store_true",
                      help="mlp4096 at 1 %% and batch 128, 2 repeats of 5 steps")
  args = parser.parse_args()
  if args.quick:
    args.models, args.densities, args.batches, args.repeats, args.steps = (
        "mlp4096", "1", "128", 2, 5)
  try:
    import sparseprop  # noqa: F401
    import torch
    torch_note = f"torch {torch.__version__} ({torch.get_num_threads()} threads), sparseprop"
  except ImportError:
    torch_note = ("no sparseprop/torch (to compare: pip install torch==2.13.0 pybind11 scipy, then "
                  "pip install --no-build-isolation sparseprop)")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}; {torch_note}; median of "
        f"{args.repeats} x {args.steps} steps; Adam; every layer constant fan-in")
  columns = ["condensed", "masked", "dense", "sparseprop", "torch"]
  print(f"{'model':<11} {'dens%':>5} {'batch':>5} " + " ".join(f"{c:>10}" for c in columns) +
        f" {'cond/mask':>9} {'cond/dense':>10}   memory MB (cond / masked / dense)")
  for model in args.models.split(","):
    widths = MODELS[model]
    dense_rates = {}
    for density in [float(d) / 100 for d in args.densities.split(",")]:
      for batch in [int(b) for b in args.batches.split(",")]:
        first = batch not in dense_rates
        rates, memory = measure(widths, density, batch, args.steps, args.repeats,
                                with_dense=first, use_torch=not args.no_torch)
        if first:
          dense_rates[batch] = {n: rates[n] for n in ("dense", "torch") if n in rates}
          dense_rates[batch]["memory"] = memory["dense"]
        rates.update({n: v for n, v in dense_rates[batch].items() if n != "memory"})
        cells = " ".join(f"{rates[c]:>10.1f}" if c in rates else f"{'-':>10}" for c in columns)
        mb = [memory["condensed"] / 2 ** 20, memory["masked"] / 2 ** 20,
              dense_rates[batch]["memory"] / 2 ** 20]
        print(f"{model:<11} {density * 100:>5.3g} {batch:>5} {cells} "
              f"{rates['condensed'] / rates['masked']:>8.2f}x "
              f"{rates['condensed'] / rates['dense']:>9.2f}x   "
              f"{mb[0]:.1f} / {mb[1]:.1f} / {mb[2]:.1f}", flush=True)


if __name__ == "__main__":
  main()
