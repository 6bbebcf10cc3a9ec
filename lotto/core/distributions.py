"""Layer distributions: per-layer densities whose weighted mean is a target.

`uniform` puts every layer at the target; `erk` (Erdos-Renyi-Kernel, Evci et
al. 2020) gives a layer a density proportional to sum(shape) / prod(shape), so
small layers keep more of their weights; `fanin` (`lotto.core.fanin`) puts every
layer at the target like `uniform`, rounded to a whole number of inputs per output
unit (k = max(1, round(d * fan_in)), so the layer's density is k / fan_in), for the
constant fan-in masks `fanin.fanin_masks` draws. Pruning at init takes
`DISTRIBUTIONS`; sparse training's start masks take `START_DISTRIBUTIONS`.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.fanin import FANIN, fanin_densities
from lotto.core.types import Params, Prunable

DISTRIBUTIONS = ("none", "uniform", "erk")
START_DISTRIBUTIONS = ("uniform", "erk", FANIN)  # sparse training's start masks


def layer_sizes(params: Params, prunable: Prunable) -> dict[str, tuple[int, ...]]:
  """Shapes of the prunable leaves by name."""
  names = masks_lib.leaf_names(params)
  return {n: tuple(p.shape) for n, p, f in zip(names, jax.tree.leaves(params),
                                                jax.tree.leaves(prunable)) if f}


def layer_distribution(kind: str, density: float, shapes: Mapping[str, tuple[int, ...]]
                       ) -> dict[str, float]:
  """Per-layer densities whose weighted mean is `density`.

  uniform: every layer at `density`. erk: density_l proportional to
  sum(shape_l) / prod(shape_l), scaled to hit the target; layers that would
  exceed 1 are made dense and the scale is re-solved over the rest. fanin:
  every layer at k / fan_in with k = max(1, round(density * fan_in)) inputs per
  output unit (`fanin.fanin_densities`; shapes of rank >= 2).
  """
  d = masks_lib.check_density(density)
  if kind == "uniform":
    return {n: d for n in shapes}
  if kind == FANIN:
    return fanin_densities(d, shapes)
  if kind != "erk":
    raise ConfigError(f"unknown layer distribution {kind!r}; valid choices: "
                      f"{', '.join(DISTRIBUTIONS + (FANIN,))}")
  sizes = {n: math.prod(s) for n, s in shapes.items()}
  raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
  dense: set[str] = set()
  while True:
    budget = d * sum(sizes.values()) - sum(sizes[n] for n in dense)
    free = [n for n in shapes if n not in dense]
    scale = budget / sum(raw[n] * sizes[n] for n in free)
    over = [n for n in free if scale * raw[n] > 1]
    if not over:
      out = {n: 1.0 if n in dense else scale * raw[n] for n in shapes}
      return out
    dense.update(over)
