"""N:M masks through a compressed gather.

`core.structure`'s n:m masks keep at most n weights in every group of m
consecutive inputs of each output (axis -2 of the kernel). The layer stores,
for every group and output, just n values and their input indices (a group
with fewer survivors is padded with zero values), and computes
y[:, j] = sum over groups g and slots k of x[:, rows[g, k, j]] * values[g, k, j]:
one gather and one contraction, O(batch * in * out * n / m).

On GPUs with sparse tensor cores an N:M product has its own hardware path;
older jax releases exposed it as an N:M primitive in `jax.experimental.sparse`
(GPU only). The installed jax (0.10) has none, so this module never calls it:
the gather formulation is what runs on every backend.

With m equal to the fan-in, the layout is a padded per-column (ELL) format,
which holds any mask.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, divisors, sparse_layer, static


@sparse_layer
class NmLayer:
  """n values per group of m inputs per output.

  Attributes:
    values: (in / m, n, out) weights of each group's slots (0 in padding slots).
    rows: (in / m, n, out) int32 input index of each slot.
  """
  values: jax.Array
  rows: jax.Array
  in_features: int = static()
  out_features: int = static()
  n: int = static()
  m: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights (slots, padding included)."""
    return int(np.prod(self.values.shape))


def group_counts(mask: np.ndarray, m: int) -> np.ndarray:
  """Survivors in every group of m consecutive inputs of each output: (in / m, out)."""
  fan_in, fan_out = mask.shape
  return mask.reshape(fan_in // m, m, fan_out).sum(axis=1)


def detect_nm(mask) -> tuple[int, int]:
  """The (n, m) with the smallest n / m (then the smallest m) that holds the mask.

  Raises:
    ConfigError: every m dividing the fan-in has a full group (n = m: nothing saved).
  """
  mask = np.asarray(mask, bool)
  best = None
  for m in divisors(mask.shape[0]):
    if m < 2:
      continue
    n = int(group_counts(mask, m).max())
    if n < m and (best is None or n * best[1] < best[0] * m):
      best = (n, m)
  if best is None:
    raise ConfigError(f"the {mask.shape[0]}x{mask.shape[1]} mask has no N:M structure (some "
                      "output keeps all of its inputs); use kernel 'dense' or 'gather'")
  return best


def compress_nm(weights, mask, structure: Structure | None = None) -> NmLayer:
  """The N:M layout of W * M.

  Args:
    weights, mask: the (in, out) kernel and its mask.
    structure: an n:m structure (`core.structure`, e.g. "2:4") fixes n and m; anything
      else (None, unstructured, block) detects them (`detect_nm`).

  Raises:
    ConfigError: m does not divide the fan-in, a group keeps more than n weights, or
      (detecting) no m saves anything.
  """
  masked, mask = check_kernel(weights, mask)
  fan_in, fan_out = masked.shape
  if structure is not None and structure.kind == "n:m":
    n, m = structure.n, structure.m
  else:
    n, m = detect_nm(mask)
  if fan_in % m:
    raise ConfigError(f"n:m {n}:{m}: m does not divide the kernel's {fan_in} inputs")
  counts = group_counts(mask, m)
  if counts.max() > n:
    group, column = np.unravel_index(np.argmax(counts), counts.shape)
    raise ConfigError(f"the mask is not {n}:{m}: output {column} keeps {counts.max()} of the "
                      f"{m} inputs {group * m}..{group * m + m - 1}")
  grouped_mask = mask.reshape(fan_in // m, m, fan_out)
  # Survivors first, in input order: each group's first n slots hold all of them.
  slots = np.argsort(~grouped_mask, axis=1, kind="stable")[:, :n]
  values = np.take_along_axis(masked.reshape(grouped_mask.shape), slots, axis=1)
  rows = slots + (np.arange(fan_in // m) * m)[:, None, None]
  return NmLayer(jnp.asarray(values), jnp.asarray(rows, jnp.int32), fan_in, fan_out, n, m)


def nm_matmul(layer: NmLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in)."""
  return jnp.einsum("bgkj,gkj->bj", x[:, layer.rows], layer.values)
