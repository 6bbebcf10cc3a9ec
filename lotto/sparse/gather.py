"""Unstructured masks by gather and segment-sum: O(batch * nnz), fully vectorized.

y[:, j] = sum over survivors (i, j) of x[:, i] * W[i, j]: gather the input
columns of every survivor's row, multiply by the values, and sum the
products by output column with `jax.ops.segment_sum` (a static number of
segments, the layer's outputs). Survivors are sorted by column so the sum
runs over sorted segment ids.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, sparse_layer, static


@sparse_layer
class GatherLayer:
  """The survivors of W * M in column-major order.

  Attributes:
    values: (nnz,) the surviving weights.
    rows: (nnz,) int32 input index of each.
    cols: (nnz,) int32 output index of each, ascending.
  """
  values: jax.Array
  rows: jax.Array
  cols: jax.Array
  in_features: int = static()
  out_features: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights: the survivors."""
    return int(self.values.shape[0])


def compress_gather(weights, mask, structure: Structure | None = None) -> GatherLayer:
  """The gather layout of W * M (every mask fits; `structure` is ignored)."""
  del structure
  masked, mask = check_kernel(weights, mask)
  cols, rows = np.nonzero(mask.T)  # column-major: segment ids sorted
  return GatherLayer(jnp.asarray(masked[rows, cols]), jnp.asarray(rows, jnp.int32),
                     jnp.asarray(cols, jnp.int32), *masked.shape)


def gather_matmul(layer: GatherLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in)."""
  products = x[:, layer.rows] * layer.values  # (batch, nnz)
  sums = jax.ops.segment_sum(products.T, layer.cols, num_segments=layer.out_features,
                             indices_are_sorted=True)  # (out, batch)
  return sums.T
