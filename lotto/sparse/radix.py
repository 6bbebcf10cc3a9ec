"""RadiX-Net layers through their structure: sums of cyclically shifted inputs.

A RadiX-Net layer (`lotto.topologies.radixnet`) of radix r at place value p
connects input i to output (i + d * p) mod N for d < r; its Kronecker
widening by all-ones (B_in, B_out) blocks repeats that N x N pattern over a
grid of blocks, and a fitted input layer drops its first `crop` rows. So
every block is circulant: W[a * N + i, c * N + j] can be nonzero only where
(j - i) mod N lies in a set S of shifts, and

  y[:, c * N + j] = sum over s in S and input blocks a of
                    x[:, a * N + (j - s) mod N] * V[s, a, c, j],

r shifted, weighted adds per block pair: O(batch * connections). The shifts
become one gather of shifted indices and one contraction.

The structure is read off the mask: for each N dividing the fan-out
(smallest first), S is the pattern of the last input row, and the mask must
equal the widened, cropped circulant exactly; otherwise the mask is not a
RadiX layer. Any block-circulant mask (not only a RadiX-Net's) runs this way.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.sparse.layer import check_kernel, divisors, sparse_layer, static


@dataclasses.dataclass(frozen=True)
class RadixStructure:
  """A block-circulant layout: the (in, out) mask is the crop of the first `crop` rows of
  ones(blocks_in, blocks_out) kron C, with C[i, j] = ((j - i) mod size) in shifts."""
  size: int
  shifts: tuple[int, ...]
  blocks_in: int
  blocks_out: int
  crop: int

  def mask(self) -> np.ndarray:
    """The (blocks_in * size - crop, blocks_out * size) mask of this layout."""
    offsets = (np.arange(self.size)[None, :] - np.arange(self.size)[:, None]) % self.size
    circulant = np.isin(offsets, self.shifts)
    return np.tile(circulant, (self.blocks_in, self.blocks_out))[self.crop:]


def detect_radix(mask) -> RadixStructure | None:
  """The block-circulant layout of the smallest N that equals `mask`, or None."""
  mask = np.asarray(mask, bool)
  fan_in, fan_out = mask.shape
  if fan_in == 0 or fan_out == 0:
    return None
  for size in divisors(fan_out):
    blocks_in = math.ceil(fan_in / size)
    crop = blocks_in * size - fan_in
    # The last row is row size - 1 of the last input block (never cropped).
    last = np.nonzero(mask[-1, :size])[0]
    shifts = tuple(int(s) for s in sorted((last - (size - 1)) % size))
    if fan_in >= size and (mask[-size:].sum(axis=0) != len(shifts)).any():
      continue  # a full circulant block has len(shifts) survivors in every column
    layout = RadixStructure(size, shifts, blocks_in, fan_out // size, crop)
    if np.array_equal(layout.mask(), mask):
      return layout
  return None


@sparse_layer
class RadixLayer:
  """A block-circulant layer's weights by shift.

  Attributes:
    values: (R, blocks_in, blocks_out, size) with values[r, a, c, j] =
      W[a * size + (j - shifts[r]) mod size - crop, c * size + j] (0 in cropped rows).
  """
  values: jax.Array
  in_features: int = static()
  out_features: int = static()
  size: int = static()
  shifts: tuple[int, ...] = static()
  crop: int = static()

  @property
  def nnz(self) -> int:
    """Stored weights (cropped rows' slots included)."""
    return int(np.prod(self.values.shape))


def _shifted_index(size: int, shifts: tuple[int, ...]) -> np.ndarray:
  """(R, size): index[r, j] = (j - shifts[r]) mod size, the input feeding output j."""
  return (np.arange(size)[None, :] - np.asarray(shifts, np.int64)[:, None]) % size


def compress_radix(weights, mask, structure: Structure | None = None) -> RadixLayer:
  """The shift layout of a RadiX-Net (block-circulant) layer.

  Args:
    weights, mask: the (in, out) kernel and its mask.
    structure: ignored (the layout is read off the mask).

  Raises:
    ConfigError: the mask is not block-circulant (naming the shape).
  """
  del structure
  masked, mask = check_kernel(weights, mask)
  layout = detect_radix(mask)
  if layout is None:
    raise ConfigError(f"the {mask.shape[0]}x{mask.shape[1]} mask is not a RadiX-Net layer (no "
                      "N dividing the fan-out makes it ones(B_in, B_out) kron a circulant "
                      "N x N pattern, with the first rows cropped); use kernel 'gather'")
  size, crop = layout.size, layout.crop
  padded = np.concatenate([np.zeros((crop, mask.shape[1]), masked.dtype), masked])
  blocks = padded.reshape(layout.blocks_in, size, layout.blocks_out, size)
  index = _shifted_index(size, layout.shifts)  # (R, size)
  columns = np.arange(size)
  # values[r, a, c, j] = blocks[a, index[r, j], c, j]
  values = blocks[:, index, :, columns[None, :]]  # (R, size, blocks_in, blocks_out)
  values = np.moveaxis(values, 1, -1)
  return RadixLayer(jnp.asarray(values), mask.shape[0], mask.shape[1], size, layout.shifts,
                    crop)


def radix_matmul(layer: RadixLayer, x: jax.Array) -> jax.Array:
  """x @ (W * M) for x of shape (batch, in): the shifted copies of each input block,
  weighted and summed."""
  batch = x.shape[0]
  padded = jnp.pad(x, ((0, 0), (layer.crop, 0)))
  blocks = padded.reshape(batch, -1, layer.size)  # (batch, blocks_in, size)
  shifted = blocks[:, :, _shifted_index(layer.size, layer.shifts)]  # (batch, B_in, R, size)
  out = jnp.einsum("barj,racj->bcj", shifted, layer.values)  # (batch, blocks_out, size)
  return out.reshape(batch, layer.out_features)
