"""SRigL's drop and grow on a condensed layer (Lasby et al., ICLR 2024, "Dynamic Sparse
Training with Structured Sparsity"): RigL with a constant fan-in per output unit.

The layer is held condensed (`lotto.sparse.condensed`): values V[out, k] and
input indices I[out, k], with `active` [out] flagging the units that are not
ablated (`lotto.dynamic.srigl_ablation`; an ablated unit's values are 0). At an
update with drop fraction f (RigL's cosine schedule, `core.schedules`) and
the dense gradient G[in, out] of the update step's batch (x^T dy), every
active unit o independently:

1. drops n = round(f * k) of its slots (`jnp.round`: halves to even; at most
   fan_in - k, the inputs it does not hold): those with the smallest |V|,
   among equal |V| the slot holding the higher input index first;
2. grows n inputs it did not hold before this update (neither its kept nor
   its dropped inputs are candidates, so a dropped input cannot return in
   the same update and a grown one is never dropped in it): those with the
   largest |G[i, o]|, among equal |G| the lower input index first;
3. writes the grown inputs into the dropped slots, in order: the i-th
   dropped slot (ascending slot position) gets the i-th grown input (by
   descending |G|). Other slots keep their input and value, so rows are no
   longer sorted by input after an update (nothing relies on it).

Grown values are exactly 0, and `replaced` flags their slots so the caller
zeroes their optimizer moments (`zero_replaced`; with optax states through
`optax.tree_utils.tree_map_params`, as `lotto.train.step` does for masks).
Every unit keeps exactly k distinct inputs: the constant fan-in survives
every update. Inactive units are left untouched.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SriglUpdate(NamedTuple):
  """One layer after an SRigL update.

  Attributes:
    values: (out, k) values; grown slots and ablated units are 0.
    indices: (out, k) int32 inputs, distinct within every row.
    replaced: (out, k) bool, True where a slot's input is new (grown) or its
      unit was ablated in this update: zero its optimizer moments.
    active: (out,) bool, the units not ablated.
  """
  values: jax.Array
  indices: jax.Array
  replaced: jax.Array
  active: jax.Array


def drop_count(fraction: jax.Array | float, k: int, fan_in: int) -> jax.Array:
  """n = round(fraction * k) slots per unit (halves to even), clipped to [0, fan_in - k]."""
  n = jnp.round(jnp.asarray(fraction, jnp.float32) * k).astype(jnp.int32)
  return jnp.clip(n, 0, max(0, min(k, fan_in - k)))


def dropped_slots(values: jax.Array, indices: jax.Array, n: jax.Array,
                  active: jax.Array) -> jax.Array:
  """(out, k) bool: the n smallest-|V| slots of every active unit (ties: higher input first)."""
  # lexsort: the last key is the primary one; -indices puts the higher input first on ties.
  order = jnp.lexsort((-indices, jnp.abs(values)), axis=-1)
  rank = jnp.argsort(order, axis=-1)
  return (rank < n) & active[:, None]


def held(indices: jax.Array, fan_in: int) -> jax.Array:
  """(out, fan_in) bool: True where unit o holds input i."""
  rows = jnp.broadcast_to(jnp.arange(indices.shape[0])[:, None], indices.shape)
  return jnp.zeros((indices.shape[0], fan_in), bool).at[rows, indices].set(True)


def best_new_inputs(grads: jax.Array, exclude: jax.Array, count: int,
                    avoid: jax.Array | None = None) -> jax.Array:
  """(out, count) int32: per unit o, the `count` inputs i with exclude[o, i] False and the
  largest |G[i, o]|, by descending |G| (ties: lower input first; `lax.top_k`'s order).

  Inputs flagged in `avoid` (out, in) come only after every other candidate.
  """
  scores = jnp.abs(grads).T.astype(jnp.float32)  # >= 0
  if avoid is not None:
    scores = jnp.where(avoid, -0.5, scores)
  scores = jnp.where(exclude, -1.0, scores)
  return jax.lax.top_k(scores, count)[1].astype(jnp.int32)


def drop_and_grow_units(values: jax.Array, indices: jax.Array, grads: jax.Array,
                        fraction: jax.Array | float, active: jax.Array | None = None
                        ) -> SriglUpdate:
  """One SRigL drop-and-grow of a condensed layer (module docstring), jittable.

  Args:
    values: (out, k) weights.
    indices: (out, k) int32 inputs, distinct within every row.
    grads: (in, out) dense gradient d loss / d W of the update step's batch.
    fraction: the drop fraction (may be traced).
    active: (out,) bool units to update (default: all).

  Returns:
    `SriglUpdate` at the same k (`active` unchanged).
  """
  out, k = indices.shape
  fan_in = grads.shape[0]
  active = jnp.ones(out, bool) if active is None else active
  most = min(k, fan_in - k)  # the largest possible drop count (static)
  if most <= 0:
    return SriglUpdate(values, indices, jnp.zeros(indices.shape, bool), active)
  n = drop_count(fraction, k, fan_in)
  dropped = dropped_slots(values, indices, n, active)
  grown = best_new_inputs(grads, held(indices, fan_in), most)  # (out, most), best first
  rank = jnp.clip(jnp.cumsum(dropped, axis=1) - 1, 0, most - 1)  # i-th dropped slot
  new_indices = jnp.where(dropped, jnp.take_along_axis(grown, rank, axis=1), indices)
  new_values = jnp.where(dropped, jnp.zeros_like(values), values)
  return SriglUpdate(new_values, new_indices, dropped, active)


def zero_replaced(moment: jax.Array, replaced: jax.Array) -> jax.Array:
  """An (out, k) optimizer moment carried to the updated layer of width k' >= k.

  Slots added by widening (columns k..k'-1) start at 0, as do replaced slots.
  """
  width = replaced.shape[1] - moment.shape[1]
  if width:
    moment = jnp.concatenate([moment, jnp.zeros((moment.shape[0], width), moment.dtype)], 1)
  return jnp.where(replaced, jnp.zeros_like(moment), moment)
