"""The mask-update protocol: what the train step needs from a method that changes masks.

A method says *when* it is due (a traced predicate of the global step, so
one compiled step serves every step) and *how* it maps (params, masks, the
dense gradient, its own state, a key) to new masks and state. The dense
gradient is the gradient of the loss with respect to the effective weights
params * masks, taken at every position: nonzero where a weight is pruned,
which is what gradient-based regrowth (RigL) ranks. The method's state lives
in `TrainState.mask_state` and is checkpointed with the rest of the state.
"""
from __future__ import annotations

from typing import Protocol

import jax

from lotto.core.types import Masks, Params, PyTree


class MaskUpdate(Protocol):
  """A mask-changing method, called inside the compiled train step."""

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    """The method's state before the first update (`{}` if it keeps none)."""

  def is_due(self, step: jax.Array) -> jax.Array:
    """A traced bool scalar: does the update run at global step `step`?"""

  def update(self, params: Params, masks: Masks, dense_grads: Params, state: PyTree,
             key: jax.Array) -> tuple[Masks, PyTree]:
    """New masks (same treedef, bool leaves) and new state."""


def maybe_update_masks(method: MaskUpdate | None, step: jax.Array, params: Params, masks: Masks,
                       dense_grads: Params, state: PyTree,
                       key: jax.Array) -> tuple[Masks, PyTree]:
  """Runs `method.update` when it is due at `step` (under `lax.cond`), else keeps both.

  With `method=None` the masks and state pass through untouched, so a
  static-mask step compiles exactly as it did before the seam existed.
  """
  if method is None:
    return masks, state
  return jax.lax.cond(method.is_due(step),
                      lambda: method.update(params, masks, dense_grads, state, key),
                      lambda: (masks, state))
