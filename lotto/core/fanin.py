"""Constant fan-in masks: every output unit of a layer keeps the same number of inputs.

The layout of SRigL (Lasby et al., ICLR 2024, "Dynamic Sparse Training with
Structured Sparsity"): a Dense kernel W[in, out] keeps exactly k inputs in
every column; a conv kernel [kh, kw, cin, cout] keeps exactly k of the
kh * kw * cin weights of every output channel. With fan-in n = prod(shape[:-1])
and layer density d, k = max(1, round(d * n)) (Python's `round`: halves go to
the even integer), so a layer's achieved density is k / n, which can differ
from d by up to 1 / (2n) (more where k is lifted to 1).

The distribution named `FANIN` ("fanin") gives every layer the target
density (as "uniform") and draws constant fan-in masks at it; `fanin_masks`
takes any per-layer densities, so ERK densities with constant fan-in within
each layer (SRigL's setting) are `fanin_masks(key, params, prunable,
layer_distribution("erk", d, shapes))`.

Everything here is a pure function; `constant_fan_in` reads a concrete mask.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.types import Masks, Params, Prunable

FANIN = "fanin"


def fan_in_of(shape: tuple[int, ...]) -> int:
  """Inputs of one output unit: prod(shape[:-1]) (a Dense column, a conv output channel)."""
  if len(shape) < 2:
    raise ConfigError(f"a constant fan-in mask needs a kernel of rank >= 2; got shape {shape}")
  return math.prod(shape[:-1])


def fan_in_count(density: float, fan_in: int) -> int:
  """k = max(1, round(density * fan_in)): the inputs every output unit keeps.

  Raises:
    ConfigError: a density outside (0, 1].
  """
  d = masks_lib.check_density(density)
  return max(1, int(round(d * fan_in)))


def fanin_densities(density: float, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, float]:
  """The achieved density k / fan_in of every layer of the "fanin" distribution at `density`.

  Every layer gets k = `fan_in_count(density, fan_in)` inputs per output unit;
  passing these densities to `fanin_masks` draws exactly that k again.
  """
  return {n: fan_in_count(density, fan_in_of(s)) / fan_in_of(s) for n, s in shapes.items()}


def fanin_mask(key: jax.Array, shape: tuple[int, ...], k: int) -> jax.Array:
  """A random bool mask of `shape` with exactly k inputs kept per output unit.

  Each output unit's k inputs are a uniformly random k-subset of its fan-in
  (independent across units): the k lowest of uniform random scores, ties
  (probability ~0) resolved by the lower input index.

  Args:
    key: PRNG key.
    shape: the kernel's shape, output units last.
    k: inputs per output unit, 1 <= k <= fan-in.

  Raises:
    ConfigError: k outside [1, fan-in].
  """
  fan_in = fan_in_of(shape)
  if not 1 <= k <= fan_in:
    raise ConfigError(f"fan-in count k={k} must lie in [1, {fan_in}] for shape {shape}")
  scores = jax.random.uniform(key, (fan_in, shape[-1]))
  ranks = jnp.argsort(jnp.argsort(scores, axis=0, stable=True), axis=0, stable=True)
  return (ranks < k).reshape(shape)


def fanin_masks(key: jax.Array, params: Params, prunable: Prunable,
                densities: float | Mapping[str, float]) -> Masks:
  """Constant fan-in masks: k = max(1, round(d_l * fan_in_l)) inputs per output unit.

  The constant fan-in counterpart of `masks.random_masks` (same arguments,
  same per-leaf keys `fold_in(key, leaf_index)`).

  Args:
    key: PRNG key.
    params: params pytree (only shapes are used).
    prunable: which leaves are pruned (others get all-True); each must have
      rank >= 2.
    densities: one density for every prunable leaf, or a map from key path
      to density (every prunable leaf must appear).

  Raises:
    ConfigError: a density outside (0, 1], a missing layer, or a prunable
      leaf of rank < 2.
  """
  names = masks_lib.leaf_names(params)
  leaves, treedef = jax.tree.flatten(params)
  out = []
  for index, (name, leaf, flag) in enumerate(zip(names, leaves, jax.tree.leaves(prunable))):
    if not flag:
      out.append(jnp.ones(leaf.shape, bool))
      continue
    if isinstance(densities, Mapping):
      if name not in densities:
        raise ConfigError(f"no density given for layer {name!r}; layers: {list(densities)}")
      d = masks_lib.check_density(densities[name], f"density of {name}")
    else:
      d = masks_lib.check_density(densities)
    k = fan_in_count(d, fan_in_of(tuple(leaf.shape)))
    out.append(fanin_mask(jax.random.fold_in(key, index), tuple(leaf.shape), k))
  return jax.tree.unflatten(treedef, out)


def fan_in_counts(mask) -> np.ndarray:
  """Kept inputs of every output unit of a concrete mask (shape (out,))."""
  mask = np.asarray(mask, bool)
  return mask.reshape(-1, mask.shape[-1]).sum(axis=0)


def constant_fan_in(mask, name: str = "layer") -> int:
  """The k every output unit of `mask` keeps.

  Raises:
    ConfigError: (one line) the units keep different numbers of inputs,
      naming the layer and its fan-in range.
  """
  counts = fan_in_counts(mask)
  low, high = int(counts.min()), int(counts.max())
  if low != high:
    raise ConfigError(f"layer {name} is not constant fan-in: its output units keep {low} to "
                      f"{high} inputs; start from a constant fan-in mask "
                      f"(distribution={FANIN})")
  return low
