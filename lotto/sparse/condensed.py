"""The condensed form of a constant fan-in Dense layer, and its fan-out table.

Constant fan-in (Lasby et al., ICLR 2024, "Dynamic Sparse Training with
Structured Sparsity": every output unit keeps exactly k inputs) lets a masked
kernel W[in, out] * M be stored densely per output unit: indices I[out, k]
(int32, the kept inputs of unit o, ascending after `condense`) and values
V[out, k] = W[I[o, j], o]. Conversion is exact both ways (`condense`,
`expand`). The rows of I are distinct inputs: every function here keeps that
invariant and `expand` relies on it.

The fan-out table serves the input gradient (`condensed_ops.condensed_dense`):
for every input i, the flat positions o * k + j of the slots with
I[o, j] = i, padded to a common length F with the position out * k, one past
the last slot, which reads zero. It depends only on I, so it is built once
per mask (`fanout_table`, on the host, F = the largest fan-out) or inside a
jitted program at a fixed capacity (`fanout_slots`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.fanin import constant_fan_in
from lotto.sparse.layer import check_kernel, sparse_layer


@sparse_layer
class Condensed:
  """A constant fan-in Dense kernel, per output unit.

  Attributes:
    values: (out, k) weights; values[o, j] = W[indices[o, j], o].
    indices: (out, k) int32 input of every slot, distinct within a row.
  """
  values: jax.Array
  indices: jax.Array

  @property
  def fan_in(self) -> int:
    """k: inputs kept by every output unit."""
    return int(self.indices.shape[1])

  @property
  def out_features(self) -> int:
    """Output units."""
    return int(self.indices.shape[0])


def condense(kernel, mask, name: str = "layer") -> Condensed:
  """The condensed form of kernel * mask (numpy, once per mask, outside jit).

  Args:
    kernel: (in, out) Dense kernel.
    mask: (in, out) bool mask keeping the same number k >= 1 of inputs in every column.
    name: the layer's name for the error message.

  Returns:
    `Condensed` with each unit's inputs in ascending order.

  Raises:
    ConfigError: not a 2-D kernel, shapes differ, or the mask is not constant
      fan-in (one line naming `name`, its fan-in range and `distribution=fanin`).
  """
  masked, mask = check_kernel(kernel, mask)
  k = constant_fan_in(mask, name)
  if k == 0:
    raise ConfigError(f"layer {name} keeps no weights; a condensed layer needs k >= 1")
  # np.nonzero on the transpose lists (o, i) pairs sorted by o, then i: k per o.
  outputs, inputs = np.nonzero(mask.T)
  indices = inputs.reshape(mask.shape[1], k).astype(np.int32)
  values = masked[indices, outputs.reshape(indices.shape)]
  return Condensed(jnp.asarray(values), jnp.asarray(indices))


def expand(condensed: Condensed, in_features: int) -> tuple[jax.Array, jax.Array]:
  """The dense (kernel, mask) of a condensed layer (jittable).

  Args:
    condensed: the layer; indices distinct within each row.
    in_features: rows of the dense kernel.

  Returns:
    (kernel (in, out) with zeros off the mask, mask (in, out) bool).
  """
  out, _ = condensed.indices.shape
  columns = jnp.broadcast_to(jnp.arange(out)[:, None], condensed.indices.shape)
  kernel = jnp.zeros((in_features, out), condensed.values.dtype)
  kernel = kernel.at[condensed.indices, columns].set(condensed.values)
  mask = jnp.zeros((in_features, out), bool).at[condensed.indices, columns].set(True)
  return kernel, mask


def fanout_slots(indices: jax.Array, in_features: int, capacity: int) -> jax.Array:
  """The fan-out table of `indices` at a fixed width (jittable).

  Args:
    indices: (out, k) int32 inputs of every slot.
    in_features: inputs of the layer.
    capacity: the table's width F; an input with more than F slots loses
      the later ones (use `max_fan_out` or `fanout_table` to size it).

  Returns:
    (in_features, capacity) int32: row i lists the flat positions o * k + j
    with indices[o, j] = i in ascending order, then out * k (the zero slot).
  """
  out, k = indices.shape
  flat = indices.reshape(-1)
  order = jnp.argsort(flat, stable=True).astype(jnp.int32)  # by input, then by position
  by_input = flat[order]
  counts = jnp.bincount(flat, length=in_features)
  starts = jnp.cumsum(counts) - counts
  rank = jnp.arange(out * k, dtype=jnp.int32) - starts[by_input]
  table = jnp.full((in_features, capacity), out * k, jnp.int32)
  return table.at[by_input, rank].set(order, mode="drop")


def max_fan_out(indices, in_features: int) -> int:
  """The largest number of slots reading one input (at least 1), from concrete indices."""
  counts = np.bincount(np.asarray(indices).reshape(-1), minlength=in_features)
  return max(1, int(counts.max()))


def fanout_table(indices, in_features: int) -> jax.Array:
  """The fan-out table of concrete `indices` at the width of its largest fan-out.

  Build it once per mask: it changes only when the indices do.
  """
  return fanout_slots(jnp.asarray(indices, jnp.int32), in_features,
                      max_fan_out(indices, in_features))
