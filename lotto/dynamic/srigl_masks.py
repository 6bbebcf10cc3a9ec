"""SRigL as a mask update of masked training (dense weights times a constant fan-in mask).

`sparse.method = "srigl"` (Lasby et al., ICLR 2024, "Dynamic Sparse Training
with Structured Sparsity"): RigL's schedule (every `every` steps in [begin,
stop), drop fraction f_t by `core.schedules.drop_fraction`: alpha / 2 *
(1 + cos(pi t / stop)) for cosine) with the drop and the growth counted per
output unit, so every unit keeps the same number k of inputs. A kernel is
read as (fan_in, out) = (prod(shape[:-1]), shape[-1]): a Dense column, or a
conv output channel over (kh, kw, c_in), as `core.fanin` draws the start
masks.

The selection is the one `srigl.drop_and_grow_units` and
`srigl_ablation.srigl_update` make on the condensed form (values and input
indices per unit), made here on the dense mask with counts that may be
traced (k changes when units are ablated). At an update, in every layer:

1. active units are those holding inputs (an ablated unit holds none), each
   holding k; n = round(f_t * k) (halves to even), at most min(k, fan_in - k).
2. with `gamma` > 0, neuron ablation (`srigl_ablation`): a weight is salient
   if it is among the A * (k - n) largest |w| of the A active units' weights
   or among the A * n largest |g| of their free positions (layer-wide, ties:
   lower flat index of the (fan_in, out) kernel: input-major where the
   condensed form counts slot-major; the two differ only on exact ties); a
   unit with fewer than gamma * k salient weights is ablated (at least
   ceil(budget / fan_in) units stay: those with the most salient weights).
3. every active unit drops its n smallest |w| (ties: the higher input first)
   and grows the n inputs with the largest |g| among those it did not hold
   before the update (ties: the lower input first), so a dropped input does
   not return in the update that dropped it and a grown one is not dropped.
4. after an ablation, every active unit grows to k' = min(fan_in,
   floor(budget / A')) inputs, the extra ones by largest |g| among the
   inputs it holds no longer or never held (inputs it held before this
   update last). The budget is each layer's weight count at the start
   (`init_state`, kept in the method's state, so it survives resumes); the
   remainder budget - k' A' waits until further ablations make room.

The step (`dynamic.update.maybe_update_masks`) then zeroes every dropped and
grown weight and its optimizer moments, as for RigL: grown weights start at
exactly 0 with zero moments, and ablated units' weights and moments are 0.

Per-unit selection with a traced count is a bisection over the scores'
order-preserving integer keys, 32 compare-and-count passes over the layer
(`unit_top_k`): linear in the layer's size, where an argsort of the 784x3000
layer of the wide LeNet took ~0.5 s on 2 CPU cores.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lotto.core.schedules import drop_fraction
from lotto.core.selection import sortable_keys, top_k_mask
from lotto.core.types import Masks, Params, Prunable, PyTree
from lotto.dynamic.regrow import regrow_steps
from lotto.dynamic.srigl_ablation import surviving_units
from lotto.dynamic.update import UpdateInputs, prunable_leaves


def unit_top_k(keys: jax.Array, candidates: jax.Array, counts: jax.Array) -> jax.Array:
  """(fan_in, out) bool: in every column o, the min(counts[o], #candidates) candidates with
  the largest keys (uint32, `selection.sortable_keys`); ties: the lower row first.

  Jittable; `counts` (out,) may be traced.
  """
  counts = jnp.minimum(counts.astype(jnp.int32), candidates.sum(axis=0, dtype=jnp.int32))
  # The counts[o]-th largest key of column o: the largest t with #(keys >= t) >= counts[o],
  # built bit by bit from the most significant one.
  def bisect(i, threshold):
    trial = threshold | jnp.left_shift(jnp.uint32(1), (31 - i).astype(jnp.uint32))
    enough = (candidates & (keys >= trial)).sum(axis=0, dtype=jnp.int32) >= counts
    return jnp.where(enough, trial, threshold)

  threshold = jax.lax.fori_loop(0, 32, bisect, jnp.zeros(keys.shape[1], jnp.uint32))
  above = candidates & (keys > threshold)
  at = candidates & (keys == threshold)
  need = counts - above.sum(axis=0, dtype=jnp.int32)
  keep = above | (at & (jnp.cumsum(at, axis=0, dtype=jnp.int32) <= need))
  return keep & (counts > 0)


def smallest_per_unit(weights: jax.Array, candidates: jax.Array, counts: jax.Array) -> jax.Array:
  """(fan_in, out) bool: per column the counts[o] candidates of smallest |w|; ties: the higher
  row first (SRigL's drop)."""
  keys = ~sortable_keys(jnp.abs(weights))  # reversed order: the smallest |w| ranks first
  return unit_top_k(keys[::-1], candidates[::-1], counts)[::-1]  # rows reversed: ties high first


def largest_per_unit(scores: jax.Array, candidates: jax.Array, counts: jax.Array) -> jax.Array:
  """(fan_in, out) bool: per column the counts[o] candidates of largest score; ties: the lower
  row first (SRigL's growth)."""
  return unit_top_k(sortable_keys(scores), candidates, counts)


def drop_count(fraction: jax.Array, k: jax.Array, fan_in: int) -> jax.Array:
  """n = round(fraction * k) (halves to even), clipped to [0, min(k, fan_in - k)]; k traced."""
  n = jnp.round(jnp.asarray(fraction, jnp.float32) * k.astype(jnp.float32)).astype(jnp.int32)
  return jnp.clip(n, 0, jnp.maximum(0, jnp.minimum(k, fan_in - k)))


def srigl_layer(mask: jax.Array, weights: jax.Array, grads: jax.Array, fraction: jax.Array,
                budget: jax.Array, gamma: float = 0.0) -> jax.Array:
  """One layer's new mask after an SRigL update (module docstring), jittable.

  Args:
    mask: (fan_in, out) bool, every unit holding k inputs or none (ablated).
    weights: (fan_in, out) weights after this step's optimizer update.
    grads: (fan_in, out) dense gradient of the update step's batch.
    fraction: the drop fraction.
    budget: the layer's weight count at the start of training (int32).
    gamma: the ablation threshold in [0, 1] (static; 0: no ablation).

  Returns:
    (fan_in, out) bool: every active unit holds the same number of inputs.
  """
  fan_in = mask.shape[0]
  held = mask.sum(axis=0, dtype=jnp.int32)
  active = held > 0
  k = held.max()
  n = drop_count(fraction, k, fan_in)
  magnitudes, saliency = jnp.abs(weights), jnp.abs(grads)
  if gamma > 0:
    units = active.sum(dtype=jnp.int32)
    kept = top_k_mask(magnitudes, mask, units * (k - n))
    grown = top_k_mask(saliency, ~mask & active, units * n)
    salient = (kept | grown).sum(axis=0, dtype=jnp.int32)
    active = surviving_units(salient, active, k, gamma, (budget + fan_in - 1) // fan_in)
  survivors = mask & active
  per_unit = jnp.where(active, n, 0)
  dropped = smallest_per_unit(weights, survivors, per_unit)
  grown = largest_per_unit(saliency, ~mask & active, per_unit)
  new = (survivors & ~dropped) | grown
  if gamma > 0:
    k_new = jnp.minimum(fan_in, budget // jnp.maximum(active.sum(dtype=jnp.int32), 1))
    extra = jnp.where(active, k_new - k, 0)
    later = jnp.where(mask, -0.5, saliency)  # inputs held before this update come last
    new = new | largest_per_unit(later, ~new & active, extra)
  return new


@dataclasses.dataclass(frozen=True)
class ConstantFanInRegrow:
  """SRigL on masks, a `MaskUpdate` (`sparse.method = "srigl"`).

  Attributes:
    prunable: which leaves change (each a kernel of rank >= 2 whose start mask is
      constant fan-in).
    every: steps between updates.
    stop: no update from this step on.
    alpha: the drop fraction (at step 0 for the cosine schedule).
    schedule: "cosine" or "constant".
    begin: no update before this step.
    gamma: the neuron-ablation threshold in [0, 1] (0: no ablation).
  """
  prunable: Prunable
  every: int
  stop: int
  alpha: float = 0.3
  schedule: str = "cosine"
  begin: int = 0
  gamma: float = 0.0

  @property
  def due_steps(self) -> tuple[int, ...]:
    return regrow_steps(self.every, self.begin, self.stop)

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    """{"budget": int32 [layers]}: each prunable layer's weight count at the start."""
    del params
    return {"budget": jnp.stack([m.sum(dtype=jnp.int32)
                                 for m in prunable_leaves(masks, self.prunable)])}

  def update(self, inputs: UpdateInputs, state: PyTree) -> tuple[Masks, PyTree]:
    fraction = drop_fraction(inputs.step, self.alpha, self.stop, self.schedule)
    mask_leaves, treedef = jax.tree.flatten(inputs.masks)
    weights = jax.tree.leaves(inputs.params)
    grads = jax.tree.leaves(inputs.dense_grads)
    out, layer = [], 0
    for mask, w, g, flag in zip(mask_leaves, weights, grads, jax.tree.leaves(self.prunable)):
      if not flag:
        out.append(mask)
        continue
      shape = mask.shape
      columns = (-1, shape[-1])
      new = srigl_layer(mask.reshape(columns), w.reshape(columns), g.reshape(columns),
                        fraction, state["budget"][layer], self.gamma)
      out.append(new.reshape(shape))
      layer += 1
    return jax.tree.unflatten(treedef, out), state
