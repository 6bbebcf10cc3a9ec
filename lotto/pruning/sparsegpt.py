"""SparseGPT (Frantar & Alistarh, ICML 2023): one-shot pruning with OBS reconstruction.

On the kernel's matrix view W[in, out] (`oneshot` module docstring) and the
Hessian H = (2 / n) X^T X of the layer's calibration inputs X[n, in]:

1. Dead inputs (H_ii == 0: the input was 0 on every calibration sample) get
   H_ii = 1 and their kernel row zeroed (they change no calibration output).
2. Dampening: H += lambda I with lambda = damp * mean(diag H).
3. U = the upper Cholesky factor of H^-1 (H^-1 = U^T U); its rows are the
   "inverse Hessian sequence" of the papers' input-by-input elimination.
4. The inputs are eliminated in order, in blocks of `block` rows. Mask
   selection, unstructured (adaptive, per block): of the block's entries
   W[j, o] (all its inputs times all outputs) keep the ones with the largest
   W[j, o]^2 / U[j, j]^2, so many that the kept count up to the block's end is
   round(density * entries so far) (the layer keeps round(density * size));
   N:M: at every M-th input j, per output o, keep the N largest of
   W[j + t, o]^2 / U[j + t, j + t]^2, t < M, with W as updated so far. Then
   for each input j of the block: q = W[j] with its pruned entries zeroed,
   err = (W[j] - q) / U[j, j], the block's later rows W[j':] -= U[j, j'] err,
   and q is the row's final value. After the block, the later rows get the
   block's errors at once: W[end:] -= U[block, end:]^T Err (lazy update).

Ties in a selection keep the lower index (input, then output). The result
is the same as updating every later row after each input (the blocks only
batch the updates), so N:M results do not depend on `block`; the
unstructured mask does (it is chosen per block). Computed in float32, or in
float64 for float64 arguments (with x64 enabled).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.core.selection import top_k_mask
from lotto.core.structure import Structure, nm_masks
from lotto.pruning.oneshot import check_layer, matrix_shape

_HIGHEST = jax.lax.Precision.HIGHEST


def inverse_hessian_factor(hess: jax.Array, damp: float) -> tuple[jax.Array, jax.Array]:
  """The dead inputs and U, the upper Cholesky factor of the dampened H^-1 (jittable).

  Args:
    hess: [in, in] H = (2 / n) X^T X.
    damp: lambda = damp * mean(diag H) (after dead inputs got H_ii = 1).

  Returns:
    (dead [in] bool, U [in, in] upper triangular with H^-1 = U^T U); U holds
    NaNs when the dampened H is not positive definite.
  """
  rows = hess.shape[0]
  dead = jnp.diag(hess) == 0
  hess = hess + jnp.diag(dead.astype(hess.dtype))
  hess = hess + damp * jnp.mean(jnp.diag(hess)) * jnp.eye(rows, dtype=hess.dtype)
  lower = jnp.linalg.cholesky(hess)
  inverse = jax.scipy.linalg.cho_solve((lower, True), jnp.eye(rows, dtype=hess.dtype))
  upper = jnp.triu(jnp.linalg.cholesky(inverse).T)
  # A non-PD H gives NaNs in `lower`, hence in `inverse` and `upper`.
  return dead, upper


def _eliminate_block(w1: jax.Array, u1: jax.Array, keep: jax.Array,
                     structure: Structure) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Eliminates the rows of one block in order: (final rows q, errors, mask)."""
  diag = jnp.diag(u1)

  def select_group(j, keep, w1):
    group = jax.lax.dynamic_slice_in_dim(w1, j, structure.m, axis=0)
    scale = jax.lax.dynamic_slice_in_dim(diag, j, structure.m)
    scores = group ** 2 / scale[:, None] ** 2
    kept = nm_masks(scores, jnp.ones(scores.shape, bool), True, structure.n, structure.m)
    return jax.lax.dynamic_update_slice_in_dim(keep, kept, j, axis=0)

  def body(j, carry):
    w1, q1, err1, keep = carry
    if structure.kind == "n:m":
      keep = jax.lax.cond(j % structure.m == 0, lambda k: select_group(j, k, w1),
                          lambda k: k, keep)
    row = w1[j]
    q = jnp.where(keep[j], row, 0)
    err = (row - q) / u1[j, j]
    w1 = w1 - u1[j][:, None] * err[None, :]  # u1[j, :j] == 0: earlier rows stay
    return w1, q1.at[j].set(q), err1.at[j].set(err), keep

  zeros = jnp.zeros_like(w1)
  _, q1, err1, keep = jax.lax.fori_loop(0, w1.shape[0], body, (w1, zeros, zeros, keep))
  return q1, err1, keep


def block_keep_counts(rows: int, cols: int, block: int, density: float) -> list[int]:
  """Entries kept in each block of `block` rows (unstructured): round(density * entries up to
  the block's end) minus the same up to its start, so the layer keeps round(density * size)."""
  ends = [min(start + block, rows) for start in range(0, rows, block)]
  return [int(round(density * end * cols)) - int(round(density * start * cols))
          for start, end in zip([0] + ends[:-1], ends)]


@functools.partial(jax.jit, static_argnames=("density", "structure", "block"))
def _reconstruct(w: jax.Array, hess: jax.Array, damp: jax.Array, density: float,
                 structure: Structure, block: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(pruned and reconstructed W, mask, U is finite) on the [in, out] matrix view.

  One `lax.scan` over the blocks (one compiled block whatever the layer's width): the
  rows are padded to whole blocks with inputs that are independent of the real ones
  (U = 1 on their diagonal, 0 elsewhere, W = 0), which no selection counts.
  """
  rows, cols = w.shape
  dead, upper = inverse_hessian_factor(hess, damp)
  finite = jnp.all(jnp.isfinite(upper))
  if structure.kind == "n:m":
    block = max(structure.m, block - block % structure.m)  # whole groups per block
  block = min(block, rows)
  blocks = -(-rows // block)
  pad = blocks * block - rows
  w = jnp.pad(jnp.where(dead[:, None], 0, w), ((0, pad), (0, 0)))
  real = jnp.arange(rows + pad) < rows
  upper = jnp.pad(upper, ((0, pad), (0, pad))) + jnp.diag(~real).astype(upper.dtype)
  counts = jnp.asarray(block_keep_counts(rows, cols, block, density), jnp.int32)

  def step(w, index):
    start = index * block
    w1 = jax.lax.dynamic_slice_in_dim(w, start, block, axis=0)
    u_rows = jax.lax.dynamic_slice_in_dim(upper, start, block, axis=0)  # [block, rows]
    u1 = jax.lax.dynamic_slice_in_dim(u_rows, start, block, axis=1)
    keep = jnp.broadcast_to(jax.lax.dynamic_slice_in_dim(real, start, block)[:, None],
                            w1.shape)
    if structure.kind != "n:m":
      keep = top_k_mask(w1 ** 2 / jnp.diag(u1)[:, None] ** 2, keep, counts[index])
    q1, err1, keep = _eliminate_block(w1, u1, keep, structure)
    # Lazy update of the later rows. U is upper triangular, so earlier rows get exactly 0;
    # the block's own rows change too, but their final values are q1.
    w = w - jnp.matmul(u_rows.T, err1, precision=_HIGHEST)
    return w, (q1, keep)

  _, (q, keep) = jax.lax.scan(step, w, jnp.arange(blocks))
  return q.reshape(-1, cols)[:rows], keep.reshape(-1, cols)[:rows], finite


def sparsegpt(kernel: jax.Array, hess: jax.Array, density: float,
              structure: Structure = Structure(), block: int = 128, damp: float = 0.01,
              name: str = "layer") -> tuple[jax.Array, jax.Array]:
  """Prunes one layer with SparseGPT and reconstructs its kept weights.

  Args:
    kernel: the Flax kernel ([in, out], or a conv kernel viewed as
      [kh * kw * cin, cout]).
    hess: [in, in] H = (2 / n) X^T X of the layer's calibration inputs
      (`oneshot.hessian`).
    density: the fraction kept (n/m for N:M).
    structure: unstructured (adaptive per-block selection) or N:M (the N of
      every M consecutive inputs of each output unit).
    block: inputs per block of lazy updates (rounded down to a multiple of M
      for N:M, at least M).
    damp: the dampening lambda = damp * mean(diag H).
    name: the layer's name for errors.

  Returns:
    (new kernel of the kernel's shape and dtype, bool mask True = kept); the
    new kernel is 0 wherever the mask is False, and on dead inputs' rows.
    At density 1 without dead inputs it is the kernel unchanged.

  Raises:
    ConfigError: one line naming the layer: see `oneshot.check_layer`, a
      Hessian of another shape, a block < 1 or damp < 0, or a dampened
      Hessian that is not positive definite (use a larger damp).
  """
  check_layer(kernel.shape, density, structure, name)
  rows, cols = matrix_shape(kernel.shape)
  if jnp.shape(hess) != (rows, rows):
    raise ConfigError(f"sparsegpt: layer {name} has {rows} inputs but the Hessian has shape "
                      f"{jnp.shape(hess)}")
  if not isinstance(block, int) or block < 1:
    raise ConfigError(f"sparsegpt: layer {name}: block must be a positive integer; got "
                      f"{block!r}")
  if not isinstance(damp, (int, float)) or not math.isfinite(damp) or damp < 0:
    raise ConfigError(f"sparsegpt: layer {name}: damp must be a finite number >= 0; got "
                      f"{damp!r}")
  kernel = jnp.asarray(kernel)
  dtype = jnp.promote_types(jnp.result_type(kernel, hess), jnp.float32)
  new, mask, finite = _reconstruct(kernel.reshape(rows, cols).astype(dtype),
                                   jnp.asarray(hess, dtype), jnp.asarray(damp, dtype),
                                   float(density), structure, block)
  if not bool(finite):
    larger = 10 * damp if damp > 0 else 0.01
    raise ConfigError(f"sparsegpt: layer {name}: the dampened Hessian is not positive "
                      f"definite (or not finite) at damp = {damp:g}; use a larger damp, e.g. "
                      f"{larger:g}")
  return new.reshape(kernel.shape).astype(kernel.dtype), mask.reshape(kernel.shape)
