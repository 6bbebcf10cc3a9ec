"""Block masks through gathered dense tiles.

The kernel W[in, out] is cut into (bh, bw) tiles (as `core.structure`'s
`block:BHxBW` cuts it); only tiles holding a survivor are kept, as dense
(nblocks, bh, bw) values with their tile coordinates. The product gathers
each kept tile's input slice, multiplies in one batched matmul, and adds the
tiles' outputs into their output slices (`segment_sum` over tile columns):
O(batch * nblocks * bh * bw), the cost of the kept tiles.

Without a given tile, the largest tile the mask is constant on is detected:
a mask is constant on (bh, bw) tiles exactly when its rows are equal within
every group of bh rows and its columns within every group of bw columns, so
each side is found on its own.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, divisors, sparse_layer, static


@sparse_layer
class BlockLayer:
  """The kept tiles of W * M.

  Attributes:
    tiles: (nblocks, bh, bw) the kept tiles' weights (masked entries are 0).
    block_rows: (nblocks,) int32 tile row of each (input slice i * bh ...).
    block_cols: (nblocks,) int32 tile column of each (output slice), ascending.
  """
  tiles: jax.Array
  block_rows: jax.Array
  block_cols: jax.Array
  in_features: int = static()
  out_features: int = static()
  bh: int = static()
  bw: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights (kept tiles times their area)."""
    return int(self.tiles.shape[0]) * self.bh * self.bw


def _largest_group(lines: np.ndarray) -> int:
  """The largest divisor g of len(lines) such that lines are equal within each group of g."""
  count = lines.shape[0]
  for size in reversed(divisors(count)):
    groups = lines.reshape(count // size, size, -1)
    if (groups == groups[:, :1]).all():
      return size
  return 1


def detect_block(mask) -> tuple[int, int]:
  """The largest (bh, bw) tile on which the (in, out) mask is constant ((1, 1) if none)."""
  mask = np.asarray(mask, bool)
  return _largest_group(mask), _largest_group(mask.T)


def compress_block(weights, mask, structure: Structure | None = None) -> BlockLayer:
  """The kept tiles of W * M.

  Args:
    weights, mask: the (in, out) kernel and its mask.
    structure: a block structure (`core.structure`, "block:BHxBW") fixes the tile (any
      mask then fits: a tile holding any survivor is kept, its pruned entries stored as
      0); anything else (None, unstructured, n:m) detects the largest tile the mask is
      constant on.

  Raises:
    ConfigError: the tile does not divide the kernel, or (detecting) the mask is
      constant on no tile larger than 1x1.
  """
  masked, mask = check_kernel(weights, mask)
  fan_in, fan_out = masked.shape
  if structure is not None and structure.kind == "block":
    bh, bw = structure.bh, structure.bw
  else:
    bh, bw = detect_block(mask)
    if bh * bw == 1:
      raise ConfigError(f"the {fan_in}x{fan_out} mask has no block structure (it is constant "
                        "on no tile larger than 1x1); give structure block:BHxBW to keep "
                        "partly pruned tiles, or use kernel 'gather' or 'bcoo'")
  if fan_in % bh or fan_out % bw:
    raise ConfigError(f"block:{bh}x{bw} tiles do not divide the {fan_in}x{fan_out} kernel")
  tiled = masked.reshape(fan_in // bh, bh, fan_out // bw, bw).transpose(0, 2, 1, 3)
  kept = mask.reshape(fan_in // bh, bh, fan_out // bw, bw).any(axis=(1, 3))
  cols, rows = np.nonzero(kept.T)  # tiles sorted by tile column
  return BlockLayer(jnp.asarray(tiled[rows, cols]), jnp.asarray(rows, jnp.int32),
                    jnp.asarray(cols, jnp.int32), fan_in, fan_out, bh, bw)


def block_matmul(layer: BlockLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in)."""
  batch = x.shape[0]
  slices = x.reshape(batch, layer.in_features // layer.bh, layer.bh)[:, layer.block_rows]
  products = jnp.einsum("nkh,khw->knw", slices, layer.tiles)  # (nblocks, batch, bw)
  sums = jax.ops.segment_sum(products, layer.block_cols,
                             num_segments=layer.out_features // layer.bw,
                             indices_are_sorted=True)  # (out / bw, batch, bw)
  return sums.transpose(1, 0, 2).reshape(batch, layer.out_features)
