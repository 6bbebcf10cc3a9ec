"""One-shot pruning of a trained layer: calibration statistics, magnitude and Wanda masks.

Layer convention. A Flax kernel is W[in, out]: its rows are the layer's
inputs (the papers write W[out, in]). A conv kernel [kh, kw, cin, cout] is
treated as the matrix kernel.reshape(kh * kw * cin, cout), whose inputs are
its im2col patches with the features in the same (kh, kw, cin) order. N:M
groups are M consecutive inputs of one output unit; for a conv kernel they
lie within the input channels (cin must be a multiple of M), as in
`lotto.core.structure`.

Calibration. The statistics of a layer's inputs X[n, in] are streamed batch
by batch: the count n, the sum over samples of X[:, i]^2 per input (Wanda
needs only these) and, for SparseGPT, the sum of X^T X; `hessian` gives
H = (2 / n) X^T X.

Masks ("True = kept"):

- `magnitude_mask`: the lowest |W| pruned per layer (or per output unit);
  N:M keeps the N largest |W| of every M consecutive inputs of each output.
- `wanda_mask` (Sun et al., ICLR 2024, "A Simple and Effective Pruning
  Approach for Large Language Models"): score |W[i, o]| * ||X[:, i]||_2,
  compared within each output unit o: round(density * in) kept per output
  (unstructured), or the N highest of every M consecutive inputs (N:M). No
  weight update.

Ties are kept in index order (the lower input first). SparseGPT, which also
updates the kept weights, is `lotto.pruning.sparsegpt`; the registry of the
three methods is `lotto.pruning.oneshot_methods`.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.core.selection import top_k_mask
from lotto.core.structure import Structure, nm_masks


class InputStatistics(NamedTuple):
  """Running sums over the calibration inputs of one layer (a pytree).

  Attributes:
    count: the number of samples n (rows of X), an int32 scalar.
    sum_squares: [in] sum over samples of X[:, i]^2.
    gram: [in, in] sum of X^T X, or None when only the norms are kept.
  """
  count: jax.Array
  sum_squares: jax.Array
  gram: jax.Array | None


def _float_type(*arrays: jax.Array) -> jnp.dtype:
  """float32, or float64 when an argument is float64 (with x64 enabled)."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def input_statistics(x: jax.Array, with_gram: bool = True) -> InputStatistics:
  """The statistics of one batch of a layer's inputs.

  Args:
    x: [..., in] inputs; every leading index is a sample (tokens, pixels of
      im2col patches, examples).
    with_gram: also sum X^T X (SparseGPT needs it, Wanda does not).

  Returns:
    `InputStatistics` of the batch, in float32 (float64 for float64 inputs).
  """
  x = jnp.asarray(x)
  x = x.reshape(-1, x.shape[-1]).astype(_float_type(x))
  gram = (jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST) if with_gram else None)
  return InputStatistics(jnp.asarray(x.shape[0], jnp.int32), jnp.sum(x * x, axis=0), gram)


def empty_statistics(width: int, with_gram: bool = True,
                     dtype: jnp.dtype = jnp.float32) -> InputStatistics:
  """Zero statistics of a layer with `width` inputs (the start of a stream)."""
  return InputStatistics(jnp.asarray(0, jnp.int32), jnp.zeros((width,), dtype),
                         jnp.zeros((width, width), dtype) if with_gram else None)


def merge_statistics(a: InputStatistics, b: InputStatistics) -> InputStatistics:
  """The statistics of two sample sets together (sums add; jittable)."""
  gram = None if a.gram is None or b.gram is None else a.gram + b.gram
  return InputStatistics(a.count + b.count, a.sum_squares + b.sum_squares, gram)


def update_statistics(stats: InputStatistics, x: jax.Array) -> InputStatistics:
  """Adds a batch of inputs `x` [..., in] to running `stats` (jittable)."""
  return merge_statistics(stats, input_statistics(x, with_gram=stats.gram is not None))


def input_norms(stats: InputStatistics) -> jax.Array:
  """||X[:, i]||_2 per input i, Wanda's activation norms ([in])."""
  return jnp.sqrt(stats.sum_squares)


def hessian(stats: InputStatistics) -> jax.Array:
  """H = (2 / n) X^T X, the Hessian of the layer's squared reconstruction error.

  Raises:
    ConfigError: the statistics hold no Gram matrix (collected with
      `with_gram=False`).
  """
  if stats.gram is None:
    raise ConfigError("the calibration statistics hold no X^T X; collect them with "
                      "with_gram=True for SparseGPT")
  return stats.gram * (2.0 / jnp.maximum(stats.count, 1).astype(stats.gram.dtype))


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """(in, out) of a kernel's matrix view: (prod(shape[:-1]), shape[-1])."""
  return math.prod(shape[:-1]), shape[-1]


def check_layer(shape: tuple[int, ...], density: float, structure: Structure,
                name: str = "layer") -> None:
  """Checks that a kernel of `shape` can be pruned to `density` under `structure`.

  Args:
    shape: the kernel's shape ([in, out] or [kh, kw, cin, cout]).
    density: the fraction kept, in (0, 1]; an N:M structure keeps n/m exactly.
    structure: unstructured or N:M (block structure is not a one-shot option).
    name: the layer's name for the error message.

  Raises:
    ConfigError: one line naming the layer: a vector, a density outside
      (0, 1], a block structure, an input width that is not a multiple of M,
      or a density other than n/m with N:M.
  """
  shape = tuple(shape)
  if len(shape) < 2:
    raise ConfigError(f"one-shot pruning: layer {name} has shape {shape}; only kernels "
                      "(ndim >= 2) are pruned")
  if not isinstance(density, (int, float)) or not 0.0 < float(density) <= 1.0:
    raise ConfigError(f"one-shot pruning: layer {name}: density must lie in (0, 1]; "
                      f"got {density!r}")
  if structure.kind == "block":
    raise ConfigError(f"one-shot pruning: layer {name}: structure {structure} is not "
                      "supported; valid choices: unstructured, n:m (e.g. '2:4')")
  if structure.kind != "n:m":
    return
  if shape[-2] % structure.m:
    raise ConfigError(f"one-shot pruning: layer {name} has {shape[-2]} inputs on axis -2 "
                      f"(kernel shape {shape}), not a multiple of m = {structure.m} for "
                      f"structure {structure}")
  if abs(float(density) - structure.max_density) > 1e-9:
    raise ConfigError(f"one-shot pruning: layer {name}: structure {structure} keeps density "
                      f"{structure.max_density:g}; got density {density!r}")


@functools.partial(jax.jit, static_argnames="structure")
def _nm_keep(scores: jax.Array, structure: Structure) -> jax.Array:
  """The N highest of every M consecutive rows of `scores` [in, out], per column."""
  ones = jnp.ones(scores.shape, bool)
  return nm_masks(scores, ones, True, structure.n, structure.m)


@jax.jit
def _top_k(scores: jax.Array, k: jax.Array) -> jax.Array:
  """The k highest of all `scores` (ties: lower flat index); one compile per shape."""
  return top_k_mask(scores, jnp.ones(scores.shape, bool), k)


@jax.jit
def keep_per_column(scores: jax.Array, k: int | jax.Array) -> jax.Array:
  """Keeps the k highest scores of each column of `scores` [in, out] (ties: lower row).

  Jittable (k may be traced).
  """
  order = jnp.argsort(-scores, axis=0, stable=True)
  ranks = jnp.argsort(order, axis=0, stable=True)
  return ranks < k


def magnitude_mask(kernel: jax.Array, density: float, structure: Structure = Structure(),
                   per_output: bool = False, name: str = "layer") -> jax.Array:
  """Magnitude pruning of one layer: keeps the largest |W|.

  Args:
    kernel: the Flax kernel ([in, out] or a conv kernel).
    density: the fraction kept (n/m for N:M).
    structure: unstructured (round(density * size) kept in the layer, or
      round(density * in) per output unit with `per_output`) or N:M (the N
      largest of every M consecutive inputs of each output).
    per_output: compare within each output unit instead of the whole layer
      (unstructured only).
    name: the layer's name for errors.

  Returns:
    A bool mask of the kernel's shape, True = kept.

  Raises:
    ConfigError: see `check_layer`.
  """
  check_layer(kernel.shape, density, structure, name)
  rows, cols = matrix_shape(kernel.shape)
  scores = jnp.abs(jnp.asarray(kernel)).reshape(rows, cols)
  if structure.kind == "n:m":
    keep = _nm_keep(scores, structure)
  elif per_output:
    keep = keep_per_column(scores, int(round(density * rows)))
  else:
    keep = _top_k(scores, int(round(density * scores.size)))
  return keep.reshape(kernel.shape)


def wanda_scores(kernel: jax.Array, norms: jax.Array) -> jax.Array:
  """Wanda's scores |W[i, o]| * ||X[:, i]||_2 on the kernel's [in, out] matrix view."""
  rows, cols = matrix_shape(kernel.shape)
  w = jnp.asarray(kernel).reshape(rows, cols)
  return jnp.abs(w) * jnp.asarray(norms, _float_type(w)).reshape(rows, 1)


def wanda_mask(kernel: jax.Array, norms: jax.Array, density: float,
               structure: Structure = Structure(), name: str = "layer") -> jax.Array:
  """Wanda (Sun et al., ICLR 2024): prune by |weight| x input activation norm, per output.

  Args:
    kernel: the Flax kernel ([in, out] or a conv kernel).
    norms: [in] ||X[:, i]||_2 over the calibration inputs (`input_norms`).
    density: the fraction kept (n/m for N:M).
    structure: unstructured (round(density * in) kept per output unit) or
      N:M (the N highest of every M consecutive inputs of each output).
    name: the layer's name for errors.

  Returns:
    A bool mask of the kernel's shape, True = kept.

  Raises:
    ConfigError: see `check_layer`, or norms of another width.
  """
  check_layer(kernel.shape, density, structure, name)
  rows, _ = matrix_shape(kernel.shape)
  if jnp.shape(norms) != (rows,):
    raise ConfigError(f"wanda: layer {name} has {rows} inputs but the calibration norms have "
                      f"shape {jnp.shape(norms)}")
  scores = wanda_scores(kernel, norms)
  if structure.kind == "n:m":
    keep = _nm_keep(scores, structure)
  else:
    keep = keep_per_column(scores, int(round(density * rows)))
  return keep.reshape(kernel.shape)
