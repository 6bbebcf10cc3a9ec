"""The masked train step, with the seam where mask updates run.

The sparsity invariant lives inside the step, in this order:

1. the loss of the effective weights params * masks (the params themselves:
   pruned entries are exactly 0 in every state) and its gradient with
   respect to those weights at *every* position (the dense gradient:
   nonzero where a weight is pruned);
2. gradients masked with the masks (so the optimizer moments of pruned
   weights stay 0 and so does their update), params re-masked after the
   update;
3. an optional mask update (`lotto.dynamic.MaskUpdate`) when it is due,
   which sees the updated params, the masks, the dense gradient of step 1, a
   key and the batch's loss; weights it drops or grows are set to exactly 0
   and their optimizer moments zeroed (for any optax state, through
   `optax.tree_utils.tree_map_params`), as RigL and jaxpruner do after the
   optimizer step.

So pruned weights are exactly zero in every state and checkpoint, a grown
weight starts from 0 with no momentum, and no momentum survives on a dead
weight. Without a mask update nothing of step 3 is traced, so static-mask
training compiles exactly as before the seam existed (bit-identical).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lotto.core import masks as masks_lib
from lotto.core.rng import purpose_key
from lotto.core.types import ApplyFn, Masks, PyTree
from lotto.data.inputs import InputSpec
from lotto.dynamic.update import MaskUpdate, UpdateInputs, maybe_update_masks
from lotto.runtime.devices import batch_sharding
from lotto.train import precision as precision_lib
from lotto.train.optim import Schedule
from lotto.train.state import TrainState

Metrics = dict[str, jax.Array]
StepFn = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]


def model_variables(params: PyTree, batch_stats: PyTree) -> dict:
  """The Flax variables dict (no "batch_stats" collection for models without BN)."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def zero_masked_moments(tx: optax.GradientTransformation, opt_state: optax.OptState,
                        masks: Masks) -> optax.OptState:
  """Zeroes every params-shaped optimizer leaf (momentum, Adam moments) where masks is False.

  Generic over optax states: `tree_map_params` finds the params-shaped
  subtrees of whatever chain `tx` is; counters and empty states pass through.
  """
  return optax.tree_utils.tree_map_params(
      tx, lambda v, m: jnp.where(m, v, jnp.zeros_like(v)), opt_state, masks,
      transform_non_params=lambda v: v)


def make_train_step(apply_fn: ApplyFn, tx: optax.GradientTransformation, schedule: Schedule,
                    inputs: InputSpec, mask_update: MaskUpdate | None = None,
                    mesh: Mesh | None = None, precision: str = "float32") -> StepFn:
  """Builds the (unjitted) masked train step.

  Args:
    apply_fn: `model.apply`.
    tx: update-direction transformation from `optim.create_optimizer`.
    schedule: LR as a function of the global step.
    inputs: preprocessing/augmentation of raw inputs.
    mask_update: a method that changes the masks during training (None:
      static masks).
    mesh: if given, the batch is sharded over its "data" axis.
    precision: "float32" or "bfloat16" (`train.precision`: the forward and
      backward pass on bfloat16 copies, everything stored in float32).

  Returns:
    step(state, raw_inputs, labels) -> (new_state, {"loss", "accuracy"}).
  """

  # None: float32 throughout, traced exactly as before the policy existed (bit-identical).
  dtype = precision_lib.compute_dtype(precision)
  compute = None if dtype == jnp.float32 else dtype

  def step(state: TrainState, raw: jax.Array, labels: jax.Array) -> tuple[TrainState, Metrics]:
    if mesh is not None:
      raw = jax.lax.with_sharding_constraint(raw, batch_sharding(mesh))
      labels = jax.lax.with_sharding_constraint(labels, batch_sharding(mesh))
    key = jax.random.fold_in(state.rng, state.step)
    x = inputs(raw, key)

    def loss_fn(weights):
      if compute is not None:  # mixed precision: the float32 weights' gradient flows through
        weights, inputs_x = precision_lib.cast_floats(weights, compute), x.astype(compute)
      else:
        inputs_x = x
      variables = model_variables(weights, state.batch_stats)
      if state.batch_stats:
        logits, updated = apply_fn(variables, inputs_x, train=True, mutable=["batch_stats"])
        batch_stats = updated["batch_stats"]
      else:
        logits, batch_stats = apply_fn(variables, inputs_x, train=True), state.batch_stats
      if compute is not None:  # the loss in float32; BN statistics stored in float32
        logits = logits.astype(jnp.float32)
        batch_stats = precision_lib.like(batch_stats, state.batch_stats)
      return cross_entropy(logits, labels).mean(), (logits, batch_stats)

    # state.params is already params * masks (pruned entries exactly 0 in every state), so
    # the loss and its dense gradient are taken at state.params as they are.
    (loss, (logits, batch_stats)), dense_grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    masks = state.masks
    direction, opt_state = tx.update(masks_lib.apply(dense_grads, masks), state.opt_state,
                                     state.params)
    lr = schedule(state.step)
    # Masked gradients keep the moments of pruned weights at 0 (they start at 0 and are
    # zeroed whenever a mask changes), so the direction is already 0 there; re-masking the
    # params pins the invariant exactly.
    params = masks_lib.apply(jax.tree.map(lambda p, u: p - lr * u, state.params, direction), masks)
    if mask_update is not None:
      update_inputs = UpdateInputs(step=state.step, params=params, masks=masks, dense_grads=dense_grads,
                            key=purpose_key(key, "mask_update"),
                            loss=lambda weights: loss_fn(weights)[0])
      params, masks, opt_state, mask_state = maybe_update_masks(
          mask_update, update_inputs, opt_state, state.mask_state,
          lambda opt, keep: zero_masked_moments(tx, opt, keep))
    else:
      mask_state = state.mask_state
    new_state = state.replace(step=state.step + 1, params=params, masks=masks,
                              opt_state=opt_state, batch_stats=batch_stats,
                              mask_state=mask_state)
    accuracy = (logits.argmax(-1) == labels).mean()
    return new_state, {"loss": loss, "accuracy": accuracy}

  return step
