"""The condensed matmul and its gradients, by gathers only (`jax.custom_vjp`).

For x[b, in], indices I[out, k], values V[out, k] (`lotto.sparse.condensed`):

  forward       y[b, o]  = sum_j V[o, j] * x[b, I[o, j]]
  weight grad   dV[o, j] = sum_b dy[b, o] * x[b, I[o, j]]
  input grad    dx[b, i] = sum over fan-out slots s of i of V.flat[s] * dy[b, s // k]

The input gradient reads the fan-out table (`condensed.fanout_table`): one
gather per slot instead of a scatter-add, which is slow on CPU; padding
slots read a zero row of dy and a zero value.

Formulation (measured on 2 shared CPU cores for 784-4096-4096-10 at 1 %
density, batch 32-256; `experiments/benchmarks/condensed_kernels.py`):
activations are feature-major (x^T, [in, b]) so that every gather copies
whole contiguous rows of b numbers, and a `fori_loop` (unrolled by
`UNROLL`) runs over the k slots (forward, weight gradient) or the F fan-out
slots (input gradient), accumulating an [out, b] or [in, b] array.
Gathering all k slots at once ([out, k, b] or [b, out, k], then one
contraction) moves k times more memory through the cache and ran 2.6-44x
slower; a scatter-add input gradient 10-270x slower. The results equal the
masked dense product up to float32 summation order (Lasby et al., ICLR
2024, and SparseProp, Nikdan et al., ICML 2023, are the published CPU
kernels for such layers).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# Loop iterations per trip of the slot loops: fewer trips cost less loop overhead at small
# batches, more code costs compile time (BUILD_NOTES.md has the measurements).
UNROLL = 2


def _forward_t(xt: jax.Array, indices: jax.Array, values: jax.Array) -> jax.Array:
  """y^T[o, b] = sum_j V[o, j] * x^T[I[o, j], b], looping over the slots j."""
  indices_t, values_t = indices.T, values.T  # row j: slot j of every unit (contiguous)
  dtype = jnp.result_type(xt, values)

  def body(j, acc):
    return acc + xt[indices_t[j]] * values_t[j][:, None]

  return jax.lax.fori_loop(0, indices.shape[1], body,
                           jnp.zeros((indices.shape[0], xt.shape[1]), dtype), unroll=UNROLL)


def _weight_grad_t(xt: jax.Array, indices: jax.Array, dyt: jax.Array) -> jax.Array:
  """dV[o, j] = sum_b dy^T[o, b] * x^T[I[o, j], b], one slot j per iteration."""
  indices_t = indices.T
  dtype = jnp.result_type(xt, dyt)
  ones = jnp.ones((xt.shape[1],), dtype)

  def body(j, dvt):
    # The sum over the batch as a matrix-vector product: ~20 % faster on CPU than a
    # row reduction.
    return dvt.at[j].set((xt[indices_t[j]] * dyt) @ ones)

  return jax.lax.fori_loop(0, indices.shape[1], body, jnp.zeros(indices_t.shape, dtype),
                           unroll=UNROLL).T


def _input_grad_t(dyt: jax.Array, values: jax.Array, fanout: jax.Array,
                  width: jax.Array | None = None) -> jax.Array:
  """dx^T[i, b] = sum_f V.flat[P[i, f]] * dy^T[P[i, f] // k, b], one slot f per iteration.

  With `width` (a traced int32 scalar: the largest fan-out in use), the loop
  stops after the first `width` slots of the table: a table sized for any
  mask (`condensed_dense_tw`) costs only what its widest input needs.
  """
  out, k = values.shape
  flat = jnp.concatenate([values.reshape(-1), jnp.zeros((1,), values.dtype)])
  # One more padding slot (value 0, row `out`) lets the dynamic loop read slots in pairs.
  table = jnp.concatenate([fanout.T, jnp.full((1, fanout.shape[0]), out * k, fanout.dtype)])
  slot_values = flat[table]                   # (F + 1, in); padding slots read 0
  slot_outputs = table // k                   # (F + 1, in); padding slots read row `out`
  dyt_padded = jnp.concatenate([dyt, jnp.zeros((1, dyt.shape[1]), dyt.dtype)])
  dtype = jnp.result_type(dyt, values)
  zeros = jnp.zeros((fanout.shape[0], dyt.shape[1]), dtype)

  def body(f, acc):
    return acc + dyt_padded[slot_outputs[f]] * slot_values[f][:, None]

  if width is None:
    return jax.lax.fori_loop(0, fanout.shape[1], body, zeros, unroll=UNROLL)
  # A traced trip count cannot be unrolled by fori_loop: two slots per iteration by hand.
  return jax.lax.fori_loop(0, (width + 1) // 2,
                           lambda i, acc: body(2 * i + 1, body(2 * i, acc)), zeros)


def condensed_forward_t(xt: jax.Array, indices: jax.Array, values: jax.Array) -> jax.Array:
  """y^T (out, batch) = the condensed product of x^T (in, batch), forward only (inference:
  no fan-out table, not differentiable by gathers)."""
  return _forward_t(jnp.asarray(xt), jnp.asarray(indices), jnp.asarray(values))


@jax.custom_vjp
def condensed_dense_t(xt: jax.Array, indices: jax.Array, values: jax.Array,
                      fanout: jax.Array) -> jax.Array:
  """The condensed product in feature-major layout: y^T (out, batch) from x^T (in, batch).

  Networks keep their activations feature-major between condensed layers
  (`condensed_train`): the gathers then read whole rows, and no transpose
  sits between layers. XLA fuses a transpose into each loop iteration that
  reads it instead of transposing once, which cost 2-4x on the weight
  gradient; this layout has no transposes to fuse.

  Args:
    xt: (in, batch) inputs.
    indices: (out, k) int32 input of every slot.
    values: (out, k) weights.
    fanout: (in, F) int32 fan-out table of `indices` (`condensed.fanout_table`).

  Returns:
    (out, batch) outputs y^T[o, b] = sum_j values[o, j] * x^T[indices[o, j], b].
  """
  del fanout
  return _forward_t(jnp.asarray(xt), jnp.asarray(indices), jnp.asarray(values))


def _condensed_dense_t_fwd(xt, indices, values, fanout):
  return condensed_dense_t(xt, indices, values, fanout), (xt, indices, values, fanout)


def _condensed_dense_t_bwd(residuals, dyt):
  xt, indices, values, fanout = residuals
  dxt = _input_grad_t(dyt, values, fanout).astype(xt.dtype)
  dvalues = _weight_grad_t(xt, indices, dyt).astype(values.dtype)
  return dxt, None, dvalues, None


condensed_dense_t.defvjp(_condensed_dense_t_fwd, _condensed_dense_t_bwd)


@jax.custom_vjp
def condensed_dense_tw(xt: jax.Array, indices: jax.Array, values: jax.Array,
                       fanout: jax.Array, width: jax.Array) -> jax.Array:
  """`condensed_dense_t` with a fan-out table wider than its use.

  A layer whose inputs change (drop and grow) keeps a table of a fixed,
  sufficient width (up to `out` slots per input) so its shapes, and so the
  compiled step and the checkpoints, never change; the input gradient loops
  over the first `width` slots only (`width`: int32 scalar, at least the
  largest fan-out of `indices`).
  """
  del fanout, width
  return _forward_t(jnp.asarray(xt), jnp.asarray(indices), jnp.asarray(values))


def _condensed_dense_tw_fwd(xt, indices, values, fanout, width):
  return (condensed_dense_tw(xt, indices, values, fanout, width),
          (xt, indices, values, fanout, width))


def _condensed_dense_tw_bwd(residuals, dyt):
  xt, indices, values, fanout, width = residuals
  dxt = _input_grad_t(dyt, values, fanout, width).astype(xt.dtype)
  dvalues = _weight_grad_t(xt, indices, dyt).astype(values.dtype)
  return dxt, None, dvalues, None, None


condensed_dense_tw.defvjp(_condensed_dense_tw_fwd, _condensed_dense_tw_bwd)


def condensed_dense(x: jax.Array, indices: jax.Array, values: jax.Array,
                    fanout: jax.Array) -> jax.Array:
  """x @ W for the constant fan-in kernel W held as (indices, values).

  Differentiable in x and values (by gathers: module docstring); indices and
  fanout are integer structure (no gradient). Batch-major around
  `condensed_dense_t`; in a network, prefer keeping activations feature-major.

  Args:
    x: (batch, in) inputs.
    indices: (out, k) int32 input of every slot.
    values: (out, k) weights.
    fanout: (in, F) int32 fan-out table of `indices` (`condensed.fanout_table`).

  Returns:
    (batch, out) outputs y[b, o] = sum_j values[o, j] * x[b, indices[o, j]].
  """
  return condensed_dense_t(jnp.asarray(x).T, indices, values, fanout).T
