"""The precision policy of training: what is stored in float32 and what is computed lower.

`train.precision = "float32"` (the default) computes everything in float32.
`"bfloat16"` is mixed precision as accelerators run it: params, optimizer
state, masks and BatchNorm statistics stay in float32; the forward and
backward pass run on bfloat16 copies of the weights and inputs; the loss is
taken in float32 from the logits. The gradient with respect to the float32
params flows back through the cast, so the optimizer sees float32 gradients,
and the masked update and re-masking are unchanged: a pruned weight stays
exactly zero (a bfloat16 zero is an exact zero).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lotto.core.types import PyTree

PRECISIONS = ("float32", "bfloat16")


def compute_dtype(precision: str) -> jnp.dtype:
  """The dtype the forward and backward pass run in under `precision`.

  Raises:
    ValueError: an unknown precision (the jobs check it first, with the valid names).
  """
  if precision not in PRECISIONS:
    raise ValueError(f"unknown precision {precision!r}: {', '.join(PRECISIONS)}")
  return jnp.dtype(jnp.bfloat16 if precision == "bfloat16" else jnp.float32)


def cast_floats(tree: PyTree, dtype: jnp.dtype) -> PyTree:
  """`tree` with every floating leaf cast to `dtype` (integer and bool leaves kept)."""
  return jax.tree.map(
      lambda leaf: leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf, tree)


def like(tree: PyTree, reference: PyTree) -> PyTree:
  """`tree` cast leaf by leaf to the dtypes of `reference` (e.g. updated BatchNorm
  statistics back to their stored float32)."""
  return jax.tree.map(lambda leaf, ref: leaf.astype(ref.dtype), tree, reference)
