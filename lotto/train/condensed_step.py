"""The train step and the evaluation of condensed execution (`train.condensed_state`).

The step is `train.step.make_train_step`'s, on the condensed state: the loss
of the MLP whose condensed layers multiply by gathers
(`sparse.condensed_ops`), its gradient with respect to the stored weights
only, the optimizer on those (so its moments are condensed), and the same
update p - lr * direction. No dense weight matrix is built: where the masked
step multiplies gradients and params by the mask, here the pruned weights do
not exist. The numbers equal the masked step's up to float32 summation order.

Activations are feature-major ((features, batch)) between the layers, as
`condensed_ops.condensed_dense_t` wants them; the forward follows
`models.mlp.MLP`: inputs flattened, ReLU after every layer but the last.

On a mask-update step (the Trainer runs it as a block's first step), the
step also takes the gradient at each layer's pre-activation (a zero offset
added there), so the dense gradient x^T dy of a layer is one product on that
step only, and under `lax.cond` when the update is due runs the condensed
drop and grow (`dynamic.condensed_regrow`): grown slots and their optimizer
moments zeroed, indices and fan-out tables rebuilt, the update logged as
`dynamic.update` logs masked updates.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from lotto.core.rng import purpose_key
from lotto.core.types import PyTree
from lotto.data.inputs import InputSpec
from lotto.dynamic.condensed_regrow import CondensedDropAndGrow
from lotto.runtime.devices import batch_sharding
from lotto.sparse.condensed import fanout_slots
from lotto.sparse.condensed_ops import condensed_dense_t, condensed_dense_tw
from lotto.train.condensed_state import CondensedLayout
from lotto.train.optim import Schedule
from lotto.train.state import TrainState
from lotto.train.step import Metrics, StepFn, cross_entropy, zero_masked_moments


def forward(layout: CondensedLayout, params: PyTree, masks: PyTree, x: jax.Array,
            offsets: list[jax.Array] | None = None) -> tuple[jax.Array, list[jax.Array]]:
  """(logits (batch, classes), each layer's input (in, batch)) of the condensed MLP.

  `offsets` (per layer (out, batch)) are added to the pre-activations: their
  gradient is the gradient there (dy), which the dense gradient needs.
  """
  h, inputs = jnp.asarray(x).reshape((x.shape[0], -1)).T, []
  for index, layer in enumerate(layout.layers):
    inputs.append(h)
    weights, wiring = params[layer], masks[layer]
    if layout.condensed[index] and layout.dynamic:  # a table sized for any mask
      h = condensed_dense_tw(h, wiring["indices"], weights["values"], wiring["fanout"],
                             wiring["width"])
    elif layout.condensed[index]:  # the table of the fixed mask: a loop of static length
      h = condensed_dense_t(h, wiring["indices"], weights["values"], wiring["fanout"])
    else:
      h = weights["kernel"].T @ h
    h = h + weights["bias"][:, None]
    if offsets is not None:
      h = h + offsets[index]
    if index < len(layout.layers) - 1:
      h = jax.nn.relu(h)
  return h.T, inputs


def initial_mask_state(update: CondensedDropAndGrow | None, layout: CondensedLayout) -> PyTree:
  """`TrainState.mask_state` before training: {} for a fixed mask, else the update log
  in `dynamic.update`'s format (one row per due step, one column per condensed layer)."""
  if update is None:
    return {}
  rows, columns = len(update.due_steps), sum(layout.condensed)
  return {"method": {}, "log": {"step": jnp.full((rows,), -1, jnp.int32),
                                "alive": jnp.zeros((rows, columns), jnp.int32),
                                "changed": jnp.zeros((rows, columns), jnp.int32)}}


def _apply_update(update: CondensedDropAndGrow, layout: CondensedLayout,
                  tx: optax.GradientTransformation, step: jax.Array, key: jax.Array,
                  params: PyTree, masks: PyTree, opt_state: optax.OptState,
                  mask_state: PyTree, inputs: list[jax.Array], dys: list[jax.Array]):
  """The drop and grow of every condensed layer, weights and moments of new slots zeroed."""
  params, masks = dict(params), dict(masks)
  keep = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
  alive, changed = [], []
  for index, layer in enumerate(layout.layers):
    if not layout.condensed[index]:
      continue
    wiring, fan_in = masks[layer], layout.in_features[index]
    grads = inputs[index] @ dys[index].T if update.needs_gradient else None
    new = update.update_layer(step, params[layer]["values"], wiring["indices"], fan_in, grads,
                              jax.random.fold_in(key, index))
    params[layer] = {**params[layer], "values": new.values}
    capacity = wiring["fanout"].shape[1]
    width = jnp.bincount(new.indices.reshape(-1), length=fan_in).max().astype(jnp.int32)
    masks[layer] = {"indices": new.indices, "width": width,
                    "fanout": fanout_slots(new.indices, fan_in, capacity)}
    keep[layer] = {**keep[layer], "values": ~new.replaced}
    alive.append(jnp.asarray(new.indices.size, jnp.int32))
    # A replaced slot flips two dense positions: its old input off, its new one on.
    changed.append(2 * new.replaced.sum(dtype=jnp.int32))
  log = mask_state["log"]
  row = jnp.searchsorted(jnp.asarray(update.due_steps, jnp.int32), step)
  log = {"step": log["step"].at[row].set(step.astype(jnp.int32)),
         "alive": log["alive"].at[row].set(jnp.stack(alive)),
         "changed": log["changed"].at[row].set(jnp.stack(changed))}
  opt_state = zero_masked_moments(tx, opt_state, keep)
  return params, masks, opt_state, {**mask_state, "log": log}


def make_condensed_step(layout: CondensedLayout, tx: optax.GradientTransformation,
                        schedule: Schedule, inputs: InputSpec,
                        update: CondensedDropAndGrow | None = None,
                        mesh: Mesh | None = None) -> StepFn:
  """Builds the (unjitted) condensed train step; arguments as `step.make_train_step`.

  Returns:
    step(state, raw_inputs, labels) -> (new_state, {"loss", "accuracy"}).
  """

  def step(state: TrainState, raw: jax.Array, labels: jax.Array) -> tuple[TrainState, Metrics]:
    if mesh is not None:
      raw = jax.lax.with_sharding_constraint(raw, batch_sharding(mesh))
      labels = jax.lax.with_sharding_constraint(labels, batch_sharding(mesh))
    key = jax.random.fold_in(state.rng, state.step)
    x = inputs(raw, key)

    def loss_fn(params, offsets):
      logits, layer_inputs = forward(layout, params, state.masks, x, offsets)
      return cross_entropy(logits, labels).mean(), (logits, layer_inputs)

    if update is None:
      (loss, (logits, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, None)
    else:
      offsets = [jnp.zeros((n, x.shape[0]), jnp.float32) for n in layout.out_features]
      (loss, (logits, layer_inputs)), (grads, dys) = jax.value_and_grad(
          loss_fn, argnums=(0, 1), has_aux=True)(state.params, offsets)
    direction, opt_state = tx.update(grads, state.opt_state, state.params)
    lr = schedule(state.step)
    params = jax.tree.map(lambda p, u: p - lr * u, state.params, direction)
    masks, mask_state = state.masks, state.mask_state
    if update is not None:
      update_key = purpose_key(key, "mask_update")
      params, masks, opt_state, mask_state = jax.lax.cond(
          update.is_due(state.step),
          lambda: _apply_update(update, layout, tx, state.step, update_key, params, masks,
                                opt_state, mask_state, layer_inputs, dys),
          lambda: (params, masks, opt_state, mask_state))
    new_state = state.replace(step=state.step + 1, params=params, masks=masks,
                              opt_state=opt_state, mask_state=mask_state)
    return new_state, {"loss": loss, "accuracy": (logits.argmax(-1) == labels).mean()}

  return step


def make_condensed_eval_fn(layout: CondensedLayout, inputs: InputSpec, batched: bool = False):
  """`evaluate.make_eval_fn` for condensed states: jitted (params, masks, batch_stats, x
  batches, y batches, weights) -> (summed loss, correct count), [K] when `batched`."""

  def evaluate(params, masks, batch_stats, x_batches, y_batches, weights):
    del batch_stats  # an MLP has none

    def body(totals, batch):
      raw, labels, w = batch
      logits, _ = forward(layout, params, masks, inputs(raw, None))
      loss = (cross_entropy(logits, labels) * w).sum()
      correct = ((logits.argmax(-1) == labels) * w).sum()
      return (totals[0] + loss, totals[1] + correct), None

    (loss, correct), _ = jax.lax.scan(body, (0.0, 0.0), (x_batches, y_batches, weights))
    return loss, correct

  if batched:
    return jax.jit(jax.vmap(evaluate, in_axes=(0, 0, 0, None, None, None)))
  return jax.jit(evaluate)
