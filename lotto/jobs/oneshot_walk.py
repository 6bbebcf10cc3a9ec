"""One-shot pruning of a whole trained network, layer after layer (SparseGPT's order).

`prune_network` walks the prunable kernels in the order the forward pass calls
them (`lotto.models.layer_inputs.call_order`). For each layer it streams the
statistics of the inputs that layer sees on the calibration examples when
every layer before it is already pruned (and, for SparseGPT, reconstructed):
one forward pass of the current params per layer, stopped by XLA after that
layer, over the calibration examples in chunks (`lax.scan`). It then prunes the
layer with the registered method (`lotto.pruning.oneshot_methods`), writes the
pruned kernel into the params, and moves on. So the calibration inputs of layer
l + 1 are those of the partially pruned network, as SparseGPT (Frantar &
Alistarh 2023, section 3) and Wanda prune a model block by block.

For every layer it also records the relative reconstruction error of the
layer's output on its calibration inputs,
||X W - X W'||^2 / ||X W||^2 = tr(D^T G D) / tr(W^T G W) with D = W - W' and
G = X^T X, which is what SparseGPT minimises. Magnitude pruning ignores the
statistics for its masks; they are collected for this diagnostic alone.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.core.types import Masks, Params, Prunable, PyTree
from lotto.models.layer_inputs import call_order, layer_inputs
from lotto.pruning.oneshot import InputStatistics, input_statistics, matrix_shape
from lotto.pruning.oneshot_methods import OneShotMethod, OneShotSettings
from lotto.train.step import model_variables

# apply(variables, x) -> outputs, in evaluation mode.
Forward = Callable[[Any, jax.Array], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class EvalForward:
  """A model's forward pass in evaluation mode, `(variables, x) -> outputs`; hashed by
  identity, so one instance per run compiles each layer's statistics once."""
  model: Any

  def __call__(self, variables: Any, x: jax.Array) -> Any:
    return self.model.apply(variables, x, train=False)


@dataclasses.dataclass
class PrunedNetwork:
  """A pruned network.

  Attributes:
    params: the params with every prunable kernel pruned (0 where masked) and,
      for methods that update weights, reconstructed.
    masks: True = kept (all True on leaves that are not prunable).
    layers: per prunable layer, in the order pruned: name, shape, inputs (rows
      of the matrix view), density, and relative reconstruction error on its
      calibration inputs (None without calibration examples).
  """
  params: Params
  masks: Masks
  layers: list[dict]


def calibration_chunks(x: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
  """`x` [n, ...] as [chunks, chunk, ...] (the last chunk padded with zeros) and the
  weights [chunks, chunk] (1 for real examples, 0 for padding)."""
  n = len(x)
  chunk = max(1, min(chunk, n))
  count = math.ceil(n / chunk)
  pad = count * chunk - n
  padded = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  weights = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  return padded.reshape(count, chunk, *x.shape[1:]), weights.reshape(count, chunk)


@functools.partial(jax.jit, static_argnames=("forward", "name"))
def layer_statistics(forward: Forward, params: Params, batch_stats: PyTree, chunks: jax.Array,
                     weights: jax.Array, name: str) -> InputStatistics:
  """The statistics (with X^T X) of layer `name`'s inputs over the calibration chunks.

  Args:
    forward: the model's forward pass in evaluation mode.
    params, batch_stats: the network as pruned so far.
    chunks: [chunks, chunk, ...] preprocessed calibration inputs.
    weights: [chunks, chunk] 1 for a real example, 0 for padding.
    name: the layer's kernel name ("a/b/kernel").
  """
  variables = model_variables(params, batch_stats)

  def add(stats: InputStatistics, batch) -> tuple[InputStatistics, None]:
    x, w = batch
    rows = layer_inputs(forward, variables, x, name)
    per_example = rows.shape[0] // x.shape[0]  # tokens, output positions
    keep = jnp.repeat(w, per_example)
    part = input_statistics(rows * keep[:, None])
    count = keep.sum().astype(jnp.int32)
    return InputStatistics(stats.count + count, stats.sum_squares + part.sum_squares,
                           stats.gram + part.gram), None

  width = jax.eval_shape(lambda x: layer_inputs(forward, variables, x, name),
                         chunks[0]).shape[-1]
  start = InputStatistics(jnp.asarray(0, jnp.int32), jnp.zeros((width,), jnp.float32),
                          jnp.zeros((width, width), jnp.float32))
  stats, _ = jax.lax.scan(add, start, (chunks, weights))
  return stats


def reconstruction_error(stats: InputStatistics, kernel: jax.Array, pruned: jax.Array) -> float:
  """||X W - X W'||^2 / ||X W||^2 on the calibration inputs (0 for a zero output)."""
  rows, cols = matrix_shape(kernel.shape)
  w = jnp.asarray(kernel, jnp.float32).reshape(rows, cols)
  delta = w - jnp.asarray(pruned, jnp.float32).reshape(rows, cols)
  gram = stats.gram

  def energy(m):
    return float(jnp.sum(m * jnp.matmul(gram, m, precision=jax.lax.Precision.HIGHEST)))

  total = energy(w)
  return energy(delta) / total if total > 0 else 0.0


def pruning_order(forward: Forward, params: Params, batch_stats: PyTree, prunable: Prunable,
                  example: jax.Array, calibrated: bool) -> list[str]:
  """The prunable kernels in the order the forward pass calls them.

  Without calibration (magnitude), leaves no Dense or Conv layer calls follow in
  params order; with it, such a leaf is a one-line error.

  Raises:
    ConfigError: a prunable leaf whose inputs are unknown (calibrated methods).
  """
  names = [n for n, flag in zip(masks_lib.leaf_names(params), jax.tree.leaves(prunable))
           if flag]
  called = call_order(forward, model_variables(params, batch_stats), example)
  order = [n for n in called if n in names]
  rest = [n for n in names if n not in order]
  if rest and calibrated:
    raise ConfigError(f"one-shot pruning: prunable leaf {rest[0]} is not the kernel of a Dense "
                      "or Conv layer the model calls, so its calibration inputs are unknown; "
                      "exclude it with masks.exclude")
  return order + rest


def prune_network(forward: Forward, params: Params, batch_stats: PyTree, prunable: Prunable,
                  calibration: np.ndarray | None, method: OneShotMethod, density: float,
                  structure: Structure, settings: OneShotSettings,
                  chunk: int = 64) -> PrunedNetwork:
  """Prunes every prunable kernel, each on the inputs of the network pruned before it.

  Args:
    forward: the model's forward pass in evaluation mode (hashable: a jit
      static argument; build it once per model).
    params, batch_stats: the trained network.
    prunable: which leaves to prune.
    calibration: [n, ...] preprocessed calibration inputs, or None (only for
      methods that need no calibration; no reconstruction errors then).
    method: the one-shot method.
    density: the fraction kept in each layer (n/m for N:M).
    structure: unstructured or N:M.
    settings: SparseGPT's block and damp, magnitude's per-output choice.
    chunk: calibration examples per forward pass.

  Returns:
    The `PrunedNetwork`.

  Raises:
    ConfigError: one line naming the layer (an N:M group that does not divide its
      inputs, a Hessian not positive definite after dampening, inputs unknown).
  """
  if calibration is None and method.needs_calibration:
    raise ConfigError(f"one-shot method {method.name} needs calibration examples")
  calibrated = calibration is not None
  params = jax.tree.map(jnp.asarray, params)
  example = jnp.asarray(calibration[:1]) if calibrated else None
  order = pruning_order(forward, params, batch_stats, prunable, example, calibrated) \
      if calibrated else [n for n, flag in zip(masks_lib.leaf_names(params),
                                                jax.tree.leaves(prunable)) if flag]
  chunks = weights = None
  if calibrated:
    chunks, weights = (jnp.asarray(a) for a in calibration_chunks(calibration, chunk))
  names = masks_lib.leaf_names(params)
  leaves, treedef = jax.tree.flatten(params)
  index = {name: i for i, name in enumerate(names)}
  masks = [jnp.ones(leaf.shape, bool) for leaf in leaves]
  layers = []
  for name in order:
    i = index[name]
    kernel = leaves[i]
    stats = layer_statistics(forward, jax.tree.unflatten(treedef, leaves), batch_stats,
                             chunks, weights, name) if calibrated else None
    pruned, mask = method.prune_layer(kernel, stats, density, structure, settings, name=name)
    leaves[i], masks[i] = pruned, mask
    layers.append({"name": name, "shape": list(kernel.shape),
                   "inputs": matrix_shape(kernel.shape)[0],
                   "density": float(jnp.mean(mask)),
                   "error": None if stats is None else reconstruction_error(stats, kernel, pruned)})
  return PrunedNetwork(jax.tree.unflatten(treedef, leaves), jax.tree.unflatten(treedef, masks),
                       layers)
