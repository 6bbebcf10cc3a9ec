"""RadiX-Nets (Robinett & Kepner 2018; Alford et al. 2019): sparse layers built from
mixed-radix numeral systems, with equal in- and out-degrees and the same number of
paths from every input to every output.

Radix lists [[r_1, ..., r_a], ...] with N = the product of the first list
(every list but the last has product N, the last's divides N) give one layer
per radix. Within a list the place value p starts at 1 and is multiplied by
each radix in turn; the layer of radix r at place value p connects neuron i
to neuron j iff j = (i + d * p) mod N for some d in 0..r-1. The Kronecker
product with all-ones blocks, A_l = ones(B_l, B_{l+1}) kron W_l, widens layer
l to B_l * N neurons (ALGORITHMS.md).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from lotto.core.errors import ConfigError


def _check(radices: Sequence[Sequence[int]], blocks: Sequence[int]) -> list[list[int]]:
  lists = [list(r) for r in radices] if isinstance(radices, (list, tuple)) else []
  if not lists or any(not r or any(isinstance(x, bool) or not isinstance(x, int) or x < 2
                                   for x in r) for r in lists):
    raise ConfigError(f"radices must be a list of non-empty lists of integers >= 2, e.g. "
                      f"[[10, 10]]; got {radices!r}")
  size = math.prod(lists[0])
  for index, r in enumerate(lists[:-1]):
    if math.prod(r) != size:
      raise ConfigError(f"radix list {index} {r} has product {math.prod(r)}; every list but the "
                        f"last must have the first list's product N = {size}")
  if size % math.prod(lists[-1]):
    raise ConfigError(f"the last radix list {lists[-1]} has product {math.prod(lists[-1])}, "
                      f"which does not divide N = {size}")
  layers = sum(len(r) for r in lists)
  if (isinstance(blocks, str) or len(blocks) != layers + 1 or
      any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks)):
    raise ConfigError(f"blocks must list {layers + 1} positive integers (one per neuron layer "
                      f"of the {layers} weight layers); got {blocks!r}")
  return lists


def radix_layer(size: int, radix: int, place: int) -> np.ndarray:
  """The (size, size) adjacency connecting i to (i + d * place) mod size, d < radix."""
  adjacency = np.zeros((size, size), bool)
  rows = np.arange(size)
  for digit in range(radix):
    adjacency[rows, (rows + digit * place) % size] = True
  return adjacency


def radixnet(radices: Sequence[Sequence[int]], blocks: Sequence[int]) -> list[np.ndarray]:
  """The per-layer adjacency matrices of a RadiX-Net.

  Args:
    radices: radix lists, e.g. [[10, 10]] (N = 100) or [[2, 2, 2]] (N = 8).
    blocks: B_0..B_L, one more than the number of radices: layer l has
      B_l * N neurons.

  Returns:
    L boolean arrays; layer l is (B_l * N, B_{l+1} * N) with density r_l / N.

  Raises:
    ConfigError: radix lists that break the product rules, or blocks of the
      wrong length (one line naming the valid form).
  """
  lists = _check(radices, blocks)
  size = math.prod(lists[0])
  layers = []
  for radix_list in lists:
    place = 1
    for radix in radix_list:
      layers.append(radix_layer(size, radix, place))
      place *= radix
  return [np.kron(np.ones((blocks[l], blocks[l + 1]), bool), w).astype(bool)
          for l, w in enumerate(layers)]
