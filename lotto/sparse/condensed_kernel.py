"""The condensed layout as an inference kernel ("condensed"): constant fan-in layers by gathers.

A constant fan-in mask (every output unit keeps k inputs, `lotto.core.fanin`)
stored per unit: values V[out, k] and input indices I[out, k]
(`lotto.sparse.condensed`). The product y[b, o] = sum_j V[o, j] x[b, I[o, j]]
runs feature-major as condensed training does (`condensed_ops`): one gather
of k contiguous rows per slot, out * k * batch multiply-adds, no scatter.
A layer from a condensed training run is written as it is (`from_condensed`),
so its export neither builds nor searches the dense kernel.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lotto.core.structure import Structure
from lotto.sparse.condensed import condense
from lotto.sparse.condensed_ops import condensed_forward_t
from lotto.sparse.layer import sparse_layer, static


@sparse_layer
class CondensedLayer:
  """A constant fan-in Dense kernel for inference.

  Attributes:
    values: (out, k) weights.
    indices: (out, k) int32 input of every slot, distinct within a row.
    in_features, out_features: the dense kernel's shape.
  """
  values: jax.Array
  indices: jax.Array
  in_features: int = static()
  out_features: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights: out * k."""
    return int(self.values.size)


def from_condensed(values, indices, in_features: int) -> CondensedLayer:
  """The inference layer of a condensed layer's (values, indices) as they are."""
  values, indices = jnp.asarray(values), jnp.asarray(indices, jnp.int32)
  return CondensedLayer(values, indices, int(in_features), int(indices.shape[0]))


def compress_condensed(weights, mask, structure: Structure | None = None) -> CondensedLayer:
  """The condensed layout of W * M (`structure` is ignored).

  Raises:
    ConfigError: a mask that is not constant fan-in (its fan-in range, and
      `distribution=fanin`).
  """
  del structure
  layer = condense(weights, mask)
  return from_condensed(layer.values, layer.indices, weights.shape[0])


def condensed_matmul(layer: CondensedLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in)."""
  return condensed_forward_t(jnp.asarray(x).T, layer.indices, layer.values).T
