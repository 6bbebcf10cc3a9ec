"""The mask-update protocol: what the train step needs from a method that changes masks.

A method names the global steps at which it runs (`due_steps`, static, so
the step compiles once and the log below has a fixed size) and maps an
`UpdateInputs` (params after this step's optimizer update, the masks, the
dense gradient, a key, the batch's loss) and its own state to new masks and
state. The dense gradient is the gradient of the loss with respect to the
effective weights params * masks, taken at every position: nonzero where a
weight is pruned, which is what gradient-based regrowth (RigL) ranks.

`maybe_update_masks` runs the method under `lax.cond` inside the compiled
step and does what every method needs, so no method can get it wrong:

- a weight alive only in the new mask (grown) starts at exactly 0, as does
  every weight the new mask drops;
- the optimizer moments of both are zeroed (a callable from the step that
  knows the optax chain, generic over its state);
- a log row per update: the step, per-layer surviving counts and per-layer
  counts of positions that changed, in fixed-size arrays of the state, so
  the record survives checkpoints and resumes with everything else.

The state in `TrainState.mask_state` is {"method": the method's own state,
"log": {"step", "alive", "changed"}}.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.masks import leaf_names
from lotto.core.types import Masks, Params, Prunable, PyTree

ZeroMoments = Callable[[PyTree, Masks], PyTree]


class UpdateInputs(NamedTuple):
  """What a mask update sees at step `step`.

  Attributes:
    step: the global step (traced int32) whose batch produced `dense_grads`.
    params: params after this step's optimizer update, masked with `masks`.
    masks: the masks before the update.
    dense_grads: d loss / d (params * masks) at every position, before the
      optimizer update.
    key: this update's PRNG key (from the step's key).
    loss: the batch's loss as a function of the effective weights (for
      curvature-based criteria such as OBD).
  """
  step: jax.Array
  params: Params
  masks: Masks
  dense_grads: Params
  key: jax.Array
  loss: Callable[[Params], jax.Array]


class MaskUpdate(Protocol):
  """A mask-changing method, called inside the compiled train step.

  Attributes:
    prunable: which leaves it may change (static bools, the params' treedef).
    due_steps: the sorted global steps at which it runs.
  """
  prunable: Prunable
  due_steps: tuple[int, ...]

  def init_state(self, params: Params, masks: Masks) -> PyTree:
    """The method's own state before the first update (`{}` if it keeps none)."""

  def update(self, inputs: UpdateInputs, state: PyTree) -> tuple[Masks, PyTree]:
    """New masks (same treedef, bool leaves; non-prunable leaves unchanged) and state."""


def prunable_leaves(tree: PyTree, prunable: Prunable) -> list:
  """The leaves of `tree` where `prunable` is True, in leaf order."""
  return [leaf for leaf, flag in zip(jax.tree.leaves(tree), jax.tree.leaves(prunable)) if flag]


def alive_counts(masks: Masks, prunable: Prunable) -> jax.Array:
  """Survivors per prunable leaf (int32, leaf order); traceable."""
  return jnp.stack([m.sum(dtype=jnp.int32) for m in prunable_leaves(masks, prunable)])


def init_mask_state(method: MaskUpdate | None, params: Params, masks: Masks) -> PyTree:
  """`TrainState.mask_state` before training: the method's state and an empty log."""
  if method is None:
    return {}
  layers = len(prunable_leaves(masks, method.prunable))
  updates = len(method.due_steps)
  log = {"step": jnp.full((updates,), -1, jnp.int32),
         "alive": jnp.zeros((updates, layers), jnp.int32),
         "changed": jnp.zeros((updates, layers), jnp.int32)}
  return {"method": method.init_state(params, masks), "log": log}


def _is_due(method: MaskUpdate, step: jax.Array) -> jax.Array:
  return jnp.any(step == jnp.asarray(method.due_steps, jnp.int32))


def maybe_update_masks(method: MaskUpdate | None, inputs: UpdateInputs, opt_state: PyTree,
                       mask_state: PyTree, zero_moments: ZeroMoments
                       ) -> tuple[Params, Masks, PyTree, PyTree]:
  """Runs `method` when `inputs.step` is one of its due steps, else passes everything through.

  Args:
    method: the mask update (None: static masks, nothing is traced).
    inputs: see `UpdateInputs`.
    opt_state: the optimizer state after this step's update.
    mask_state: {"method": ..., "log": ...} (`init_mask_state`).
    zero_moments: `zero_moments(opt_state, keep)` zeroes every params-shaped
      optimizer leaf where `keep` is False.

  Returns:
    (params, masks, opt_state, mask_state) after the update: weights and
    moments zero wherever a weight was dropped or grown.
  """
  if method is None or not method.due_steps:
    return inputs.params, inputs.masks, opt_state, mask_state

  def run():
    masks, method_state = method.update(inputs, mask_state["method"])
    log = _record(mask_state["log"], method, inputs.step, inputs.masks, masks)
    kept = jax.tree.map(jnp.logical_and, masks, inputs.masks)  # alive before and after
    params = jax.tree.map(lambda p, k: jnp.where(k, p, jnp.zeros_like(p)), inputs.params, kept)
    return params, masks, zero_moments(opt_state, kept), {"method": method_state, "log": log}

  def keep():
    return inputs.params, inputs.masks, opt_state, mask_state

  # The Trainer runs this only in the first step of a block (`make_train_block`), so the
  # copies XLA makes of what passes through the cond are paid once per block; the
  # untaken branch leaves every value as the static step computes it, so a run equals
  # the static run bit for bit until its first mask change (BUILD_NOTES.md).
  return jax.lax.cond(_is_due(method, inputs.step), run, keep)


def _record(log: PyTree, method: MaskUpdate, step: jax.Array, old: Masks, new: Masks) -> PyTree:
  row = jnp.searchsorted(jnp.asarray(method.due_steps, jnp.int32), step)
  old_leaves = prunable_leaves(old, method.prunable)
  new_leaves = prunable_leaves(new, method.prunable)
  alive = alive_counts(new, method.prunable)
  changed = jnp.stack([(a != b).sum(dtype=jnp.int32) for a, b in zip(old_leaves, new_leaves)])
  return {"step": log["step"].at[row].set(step.astype(jnp.int32)),
          "alive": log["alive"].at[row].set(alive),
          "changed": log["changed"].at[row].set(changed)}


def update_records(mask_state: PyTree, masks: Masks, prunable: Prunable) -> list[dict]:
  """The log as JSON rows, one per update that ran: {step, density, layer_densities,
  changed} (`changed`: the fraction of prunable positions whose mask flipped)."""
  if not mask_state:
    return []
  log = jax.device_get(mask_state["log"])
  names = [n for n, f in zip(leaf_names(masks), jax.tree.leaves(prunable)) if f]
  sizes = np.array([m.size for m in prunable_leaves(masks, prunable)])
  rows = []
  for step, alive, changed in zip(log["step"], log["alive"], log["changed"]):
    if step < 0:
      continue
    rows.append({"step": int(step), "density": float(alive.sum() / sizes.sum()),
                 "layer_densities": {n: float(a / s) for n, a, s in zip(names, alive, sizes)},
                 "changed": float(changed.sum() / sizes.sum())})
  return rows


def latest_update_scalars(mask_state: PyTree, prunable_total: int) -> dict[str, float]:
  """For progress writers (TensorBoard): how many updates ran and the fraction of prunable
  positions the latest one flipped; {} without a mask-update log."""
  if not isinstance(mask_state, dict) or "log" not in mask_state:
    return {}
  steps, changed = jax.device_get((mask_state["log"]["step"], mask_state["log"]["changed"]))
  ran = np.flatnonzero(steps >= 0)
  if not ran.size:
    return {"mask_updates": 0.0}
  return {"mask_updates": float(ran.size),
          "mask_changed": float(changed[ran[-1]].sum() / prunable_total)}
