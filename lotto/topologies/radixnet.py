"""RadiX-Nets (Robinett & Kepner 2018; Alford et al. 2019): sparse layers built from
mixed-radix numeral systems, with equal in- and out-degrees and the same number of
paths from every input to every output.

Radix lists [[r_1, ..., r_a], ...] with N = the product of the first list
(every list but the last has product N, the last's divides N) give one layer
per radix. Within a list the place value p starts at 1 and is multiplied by
each radix in turn; the layer of radix r at place value p connects neuron i
to neuron j iff j = (i + d * p) mod N for some d in 0..r-1. The Kronecker
product with all-ones blocks, A_l = ones(B_l, B_{l+1}) kron W_l, widens layer
l to B_l * N neurons (README.md, "Conventions").
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


def _even_factors(size: int, count: int) -> list[int] | None:
  """`size` as `count` factors >= 2, as even as possible (largest prime to the smallest)."""
  primes, n, p = [], size, 2
  while p * p <= n:
    while n % p == 0:
      primes.append(p)
      n //= p
    p += 1
  if n > 1:
    primes.append(n)
  if len(primes) < count:
    return None
  factors = [1] * count
  for prime in sorted(primes, reverse=True):
    factors[factors.index(min(factors))] *= prime
  return sorted(factors)


def fit_radixnet(widths: Sequence[int]) -> tuple[list[list[int]], list[int], int]:
  """A RadiX-Net for the layers between `widths[0]` (inputs) and `widths[-1]`.

  The rule (documented in README.md): N = the gcd of the non-input widths; one
  radix list of len(widths) - 1 radices whose product is N, as even as
  possible; blocks B_l = widths[l] / N, and for the input layer
  ceil(widths[0] / N), whose first B_0 * N - widths[0] rows are cropped.
  LeNet-300-100's hidden layers (784-300-100) give radices [[10, 10]],
  blocks [8, 3, 1] and a crop of 16: 800-300-100 at 90 % sparsity.

  Returns:
    (radices, blocks, rows to crop from the input layer).

  Raises:
    ConfigError: N has fewer prime factors than there are layers (one line
      naming widths that would fit).
  """
  layers = len(widths) - 1
  size = math.gcd(*widths[1:])
  radices = _even_factors(size, layers)
  if layers < 1 or radices is None:
    raise ConfigError(f"cannot fit a RadiX-Net to widths {list(widths)}: the gcd of the widths "
                      f"after the input, {size}, needs at least {layers} prime factors; use "
                      f"widths that are multiples of e.g. {4 ** layers} (radices "
                      f"(({', '.join(['4'] * layers)}),)) or give topology.radices and blocks")
  blocks = [math.ceil(widths[0] / size)] + [w // size for w in widths[1:]]
  return [radices], blocks, blocks[0] * size - widths[0]


def fitted_radixnet(widths: Sequence[int]) -> list[np.ndarray]:
  """`radixnet` of `fit_radixnet(widths)`, its input layer cropped to widths[0] rows."""
  radices, blocks, crop = fit_radixnet(widths)
  layers = radixnet(radices, blocks)
  layers[0] = layers[0][crop:]
  return layers
