"""The reference kernel: the masked dense matmul x @ (W * M), stored dense.

What the compressed kernels are checked against, and what "auto" picks for a
layer dense enough that a sparse layout costs more than it saves.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, sparse_layer, static


@sparse_layer
class DenseLayer:
  """W * M as a dense (in, out) array."""
  weights: jax.Array
  in_features: int = static()
  out_features: int = static()


def compress_dense(weights, mask, structure: Structure | None = None) -> DenseLayer:
  """Stores W * M dense (`structure` is ignored: every mask fits)."""
  del structure
  masked, _ = check_kernel(weights, mask)
  return DenseLayer(jnp.asarray(masked), *masked.shape)


def dense_matmul(layer: DenseLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in)."""
  return x @ layer.weights
