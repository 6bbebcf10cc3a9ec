"""Dynamic sparse training: SET (Mocanu et al. 2018) and RigL (Evci et al. 2020).

Every `every` steps before `stop`, in every prunable layer with n survivors:

1. drop: the k = floor(f_t * n) survivors with the smallest |w| (after this
   step's optimizer update) leave the mask; f_t is the drop fraction at t
   (`core.schedules.drop_fraction`: cosine or constant). Ties: among equal
   |w| the higher flat index is dropped first.
2. grow: k positions inactive after the drop join it: uniformly random ones
   (SET, random scores from the update's key) or those with the largest
   |dense gradient| of this step's batch (RigL). A weight dropped in step 1
   may be regrown (as RigL's code allows); a grown weight cannot be dropped
   in the same update, since dropping happens first. Ties: the lower flat
   index is grown first.

So every layer keeps exactly n survivors. `maybe_update_masks` sets grown
and dropped weights and their optimizer moments to exactly 0 (a weight
dropped and regrown in one update is unchanged: it never left).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lotto.core.schedules import drop_fraction
from lotto.core.selection import top_k_mask
from lotto.core.types import Masks, Params, Prunable, PyTree
from lotto.dynamic.update import UpdateInputs

GROWTH = ("random", "gradient")


def regrow_steps(every: int, begin: int, stop: int) -> tuple[int, ...]:
  """Multiples of `every` in [max(begin, every), stop): never at step 0, none from `stop` on."""
  first = max(begin, every)
  first = -(-first // every) * every  # the first multiple of `every` at or after it
  return tuple(range(first, stop, every))


def drop_and_grow(mask: jax.Array, weights: jax.Array, grow_scores: jax.Array,
                  fraction: jax.Array) -> jax.Array:
  """One layer's new mask: drop floor(fraction * n) smallest |w| survivors, grow as many
  highest-scoring inactive positions (exactly n survivors before and after)."""
  alive = mask.sum(dtype=jnp.int32)
  count = jnp.floor(fraction * alive.astype(jnp.float32)).astype(jnp.int32)
  survivors = top_k_mask(jnp.abs(weights), mask, alive - count)
  grown = top_k_mask(grow_scores, ~survivors, count)
  return survivors | grown


@dataclasses.dataclass(frozen=True)
class DropAndGrow:
  """SET (`growth="random"`) or RigL (`growth="gradient"`), a `MaskUpdate`.

  Attributes:
    prunable: which leaves change.
    every: steps between updates (RigL's delta T).
    stop: no update from this step on (RigL's T_end).
    alpha: the drop fraction (at step 0 for the cosine schedule).
    schedule: "cosine" or "constant".
    growth: "random" (SET) or "gradient" (RigL).
    begin: no update before this step.
  """
  prunable: Prunable
  every: int
  stop: int
  alpha: float = 0.3
  schedule: str = "cosine"
  growth: str = "gradient"
  begin: int = 0

  @property
  def due_steps(self) -> tuple[int, ...]:
    return regrow_steps(self.every, self.begin, self.stop)

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    del params, masks
    return {}

  def update(self, inputs: UpdateInputs, state: PyTree) -> tuple[Masks, PyTree]:
    fraction = drop_fraction(inputs.step, self.alpha, self.stop, self.schedule)
    mask_leaves, treedef = jax.tree.flatten(inputs.masks)
    weights = jax.tree.leaves(inputs.params)
    grads = jax.tree.leaves(inputs.dense_grads)
    out = []
    for index, (mask, w, g, flag) in enumerate(zip(mask_leaves, weights, grads,
                                                    jax.tree.leaves(self.prunable))):
      if not flag:
        out.append(mask)
        continue
      if self.growth == "gradient":
        scores = jnp.abs(g)
      else:
        scores = jax.random.uniform(jax.random.fold_in(inputs.key, index), mask.shape)
      out.append(drop_and_grow(mask, w, scores, fraction))
    return jax.tree.unflatten(treedef, out), state
