"""SRigL's neuron ablation, and the whole per-layer SRigL update with it.

Lasby et al. (ICLR 2024, "Dynamic Sparse Training with Structured Sparsity")
ablate a unit that keeps too few salient weights, and spread the layer's
weight budget over the units that remain. Here, at an update with n drops
per unit (`srigl.drop_count`) over the A active units:

- **Salient weights** are those that RigL's unstructured criterion over the
  whole layer would keep: the A * (k - n) largest |V| among the active
  units' slots, and the A * n largest |G[i, o]| among positions (i, o) of
  active units that are not held. (Counted per unit, SRigL's own per-unit
  drop and grow would give every unit exactly k, so the layer-wide ranking
  is what tells units apart.) Ties: `core.selection.top_k_mask` (lower flat
  index first: slot order o * k + j for |V|, i * out + o for |G|).
- A unit with fewer than gamma * k salient weights is ablated (gamma = 0
  turns ablation off). At least ceil(budget / fan_in) units stay active so
  the new k fits the fan-in; if the threshold would leave fewer, the active
  units with the most salient weights stay (ties: lower unit index). An
  ablated unit stays ablated (values 0, never grown); pass gamma = 0 for a
  layer whose units must all stay (the output layer).
- **Budget**: the layer's weight count when training started, `budget`
  (k_0 * out), is the invariant. After ablation every active unit holds
  k' = min(fan_in, floor(budget / A)) inputs: the condensed form needs one k.
  The remainder r = budget - k' * A (0 <= r < A unless capped at the fan-in)
  is not placed: no unit may hold k' + 1. It is not lost either: k' is always
  recomputed from the starting budget, so the remainder is placed as soon
  as further ablations make it divisible (e.g. budget 10: 4 units hold 2
  each, r = 2; 3 units hold 3 each, r = 1).

`srigl_update` composes the steps: decide ablations (from the saliency of
the weights before this update), zero the ablated units, SRigL's per-unit
drop and grow at the old k, then widen the active units to k' by growing
k' - k more inputs each by |G| among the inputs the unit neither holds nor
held before this update (values 0, moments 0). k' is never below k. k' changes array
shapes, so it is decided on the host between jitted pieces (a new k means
a new program, at ablation events only).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.selection import top_k_mask
from lotto.dynamic.srigl import (SriglUpdate, best_new_inputs, drop_and_grow_units, drop_count,
                                 held)


def salient_counts(values: jax.Array, indices: jax.Array, grads: jax.Array, n: jax.Array,
                   active: jax.Array) -> jax.Array:
  """(out,) int32 salient weights of every unit (module docstring); 0 for inactive units.

  Args:
    values: (out, k) weights.
    indices: (out, k) int32 inputs.
    grads: (in, out) dense gradient.
    n: drops per unit this update.
    active: (out,) bool.
  """
  out, k = values.shape
  units = active.sum(dtype=jnp.int32)
  kept = top_k_mask(jnp.abs(values), jnp.broadcast_to(active[:, None], values.shape),
                    units * (k - n))
  candidates = ~held(indices, grads.shape[0]).T & active[None, :]
  grown = top_k_mask(jnp.abs(grads), candidates, units * n)
  return kept.sum(axis=1, dtype=jnp.int32) + grown.sum(axis=0, dtype=jnp.int32)


def surviving_units(counts: jax.Array, active: jax.Array, k: int, gamma: float,
                    min_active: int) -> jax.Array:
  """(out,) bool units left active: salient count >= gamma * k, at least `min_active` of them
  (then the ones with most salient weights, ties: lower index)."""
  keep = active & (counts.astype(jnp.float32) >= gamma * k)
  fallback = top_k_mask(counts.astype(jnp.float32), active, min_active)
  return jnp.where(keep.sum() >= min_active, keep, fallback)


def fan_in_after_ablation(budget: int, units: int, fan_in: int) -> int:
  """k' = min(fan_in, floor(budget / units)): every active unit's input count."""
  return min(fan_in, budget // units)


def widen(values: jax.Array, indices: jax.Array, grads: jax.Array, active: jax.Array,
          k_new: int, previous: jax.Array | None = None) -> SriglUpdate:
  """Grows k_new - k inputs per unit by largest |G| (ties: lower input), appended as slots
  k..k_new-1 with value 0 (jittable, k_new static).

  Candidates are the inputs a unit does not hold; those held in `previous`
  (the indices before this update's drop) come last, so a dropped input
  returns in the update that dropped it only when no other input is left.
  Inactive units get new inputs too, with value 0 (distinct, never used)."""
  out, k = indices.shape
  extra = k_new - k
  if extra <= 0:
    return SriglUpdate(values, indices, jnp.zeros(indices.shape, bool), active)
  avoid = None if previous is None else held(previous, grads.shape[0])
  grown = best_new_inputs(grads, held(indices, grads.shape[0]), extra, avoid)
  return SriglUpdate(jnp.concatenate([values, jnp.zeros((out, extra), values.dtype)], 1),
                     jnp.concatenate([indices, grown], 1),
                     jnp.concatenate([jnp.zeros((out, k), bool), jnp.ones((out, extra), bool)], 1),
                     active)


@jax.jit
def _ablate(values, indices, grads, fraction, active, gamma, min_active):
  k = values.shape[1]
  n = drop_count(fraction, k, grads.shape[0])
  counts = salient_counts(values, indices, grads, n, active)
  return surviving_units(counts, active, k, gamma, min_active)


_drop_and_grow = jax.jit(drop_and_grow_units)
_widen = jax.jit(widen, static_argnums=4)


def srigl_update(values: jax.Array, indices: jax.Array, grads: jax.Array,
                 fraction: float, active: jax.Array | None = None, gamma: float = 0.0,
                 budget: int | None = None) -> SriglUpdate:
  """One layer's SRigL update with neuron ablation (module docstring); the jitted pieces
  run with k fixed, k' is chosen here.

  Args:
    values: (out, k) weights.
    indices: (out, k) int32 inputs, distinct within every row.
    grads: (in, out) dense gradient of the update step's batch.
    fraction: the drop fraction.
    active: (out,) bool units not yet ablated (default: all).
    gamma: the salient-weight threshold in [0, 1] (SRigL's gamma_sal; 0: no ablation).
    budget: the layer's starting weight count (default: k * active units now).

  Returns:
    `SriglUpdate` at width k' (`replaced`: grown slots, widened slots and the rows
    of units ablated now, whose moments must be zeroed; `zero_replaced`).

  Raises:
    ValueError: gamma outside [0, 1].
  """
  if not 0.0 <= gamma <= 1.0:
    raise ValueError(f"SRigL's gamma must lie in [0, 1]; got {gamma!r}")
  out, k = indices.shape
  fan_in = grads.shape[0]
  active = jnp.ones(out, bool) if active is None else jnp.asarray(active, bool)
  budget = k * int(active.sum()) if budget is None else budget
  before = active
  if gamma > 0:
    active = _ablate(values, indices, grads, fraction, active, gamma,
                     math.ceil(budget / fan_in))
  ablated = before & ~active
  values = jnp.where(active[:, None], values, jnp.zeros_like(values))
  step = _drop_and_grow(values, indices, grads, fraction, active)
  k_new = fan_in_after_ablation(budget, int(np.asarray(active).sum()), fan_in)
  wide = _widen(step.values, step.indices, grads, active, max(k, k_new), indices)
  replaced = wide.replaced | jnp.pad(step.replaced | ablated[:, None],
                                     ((0, 0), (0, wide.replaced.shape[1] - k)))
  return SriglUpdate(wide.values, wide.indices, replaced, active)
