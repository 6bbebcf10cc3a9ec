"""Unstructured masks through `jax.experimental.sparse`: BCOO with a static nse = nnz.

Exact-k selection gives every layer a known number of survivors, so the
number of stored entries (BCOO's `nse`) is a static shape and the product
compiles once per layer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse

from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, sparse_layer, static


@sparse_layer
class BcooLayer:
  """The survivors of W * M in row-major order.

  Attributes:
    values: (nnz,) the surviving weights.
    indices: (nnz, 2) int32 (row, column) of each, sorted and unique.
  """
  values: jax.Array
  indices: jax.Array
  in_features: int = static()
  out_features: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights: the survivors."""
    return int(self.values.shape[0])


def compress_bcoo(weights, mask, structure: Structure | None = None) -> BcooLayer:
  """The BCOO layout of W * M (every mask fits; `structure` is ignored)."""
  del structure
  masked, mask = check_kernel(weights, mask)
  rows, cols = np.nonzero(mask)  # row-major: BCOO's sorted order
  indices = np.stack([rows, cols], axis=1).astype(np.int32)
  return BcooLayer(jnp.asarray(masked[rows, cols]), jnp.asarray(indices), *masked.shape)


def bcoo_matmul(layer: BcooLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in), by `sparse.bcoo_dot_general`."""
  matrix = sparse.BCOO((layer.values, layer.indices),
                       shape=(layer.in_features, layer.out_features),
                       indices_sorted=True, unique_indices=True)
  return sparse.bcoo_dot_general(x, matrix, dimension_numbers=(([1], [0]), ([], [])))
