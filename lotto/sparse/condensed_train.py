"""Training a ReLU MLP whose every layer is condensed (constant fan-in), in condensed form.

The trainable params are, per layer, {"values": V[out, k], "bias": b[out]};
the integer structure, per layer, is {"indices": I[out, k], "fanout": P[in, F]}
(`lotto.sparse.condensed`), optionally with "active": a bool (out,) vector of
the units not ablated (SRigL, `lotto.dynamic.srigl_ablation`): an ablated
unit's values are multiplied by 0 in the forward, so their gradient and
moments are 0 and they stay 0. The optimizer (any optax transformation, Adam
included) runs on the params pytree, so its moments are condensed too: a
moment exists for every kept weight and for nothing else. The numbers equal
those of masked dense training (loss of x @ (W * M), gradients masked, as
`lotto.train.step`) up to float32 summation order, with 1/density fewer
multiply-adds per layer (`lotto.sparse.condensed_ops`).

The layers follow `lotto.models.mlp.MLP`: inputs flattened, ReLU after every
layer but the last, softmax cross-entropy with integer labels.
`dense_gradients` gives the gradient of the loss with respect to every dense
kernel position (x^T dy per layer), which gradient-based regrowth ranks
(`lotto.dynamic.srigl`); it costs a dense product per layer, so it is for the
update steps only.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from lotto.core.types import PyTree
from lotto.sparse.condensed import condense, fanout_table
from lotto.sparse.condensed_ops import condensed_dense_t

Layers = list[dict[str, jax.Array]]


class CondensedState(NamedTuple):
  """Condensed MLP training state.

  Attributes:
    params: per layer {"values": (out, k), "bias": (out,)}.
    opt_state: the optax state over `params`.
  """
  params: Layers
  opt_state: PyTree


def condense_mlp(kernels: Sequence, biases: Sequence, masks: Sequence,
                 names: Sequence[str] | None = None) -> tuple[Layers, Layers]:
  """(params, structure) of an MLP from its dense kernels, biases and constant fan-in masks.

  Args:
    kernels: per layer the (in, out) kernel.
    biases: per layer the (out,) bias.
    masks: per layer the (in, out) constant fan-in mask.
    names: the layers' names for error messages (default "layer <i>").

  Returns:
    params (per layer {"values", "bias"}) and structure (per layer
    {"indices", "fanout"}, the fan-out table at the layer's largest fan-out).

  Raises:
    ConfigError: a mask that is not constant fan-in (naming the layer).
  """
  names = names or [f"layer {i}" for i in range(len(kernels))]
  params, structure = [], []
  for kernel, bias, mask, name in zip(kernels, biases, masks, names):
    layer = condense(kernel, mask, name)
    params.append({"values": layer.values, "bias": jnp.asarray(bias)})
    structure.append({"indices": layer.indices,
                      "fanout": fanout_table(layer.indices, kernel.shape[0])})
  return params, structure


def layer_values(layer: dict[str, jax.Array], wiring: dict[str, jax.Array]) -> jax.Array:
  """The values a layer computes with: zero on ablated units (wiring["active"] False)."""
  if "active" not in wiring:
    return layer["values"]
  return jnp.where(wiring["active"][:, None], layer["values"], 0)


def mlp_logits(params: Layers, structure: Layers, x: jax.Array) -> jax.Array:
  """The MLP's logits for x of shape (batch, ...): condensed layers, ReLU between them.

  Activations are feature-major ((features, batch)) between the layers
  (`condensed_ops.condensed_dense_t`); only the input and the logits are transposed.
  """
  h = jnp.asarray(x).reshape((x.shape[0], -1)).T
  for index, (layer, wiring) in enumerate(zip(params, structure)):
    h = condensed_dense_t(h, wiring["indices"], layer_values(layer, wiring),
                          wiring["fanout"]) + layer["bias"][:, None]
    if index < len(params) - 1:
      h = jax.nn.relu(h)
  return h.T


def mlp_loss(params: Layers, structure: Layers, x: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of the MLP on (x, integer labels)."""
  logits = mlp_logits(params, structure, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_state(params: Layers, tx: optax.GradientTransformation) -> CondensedState:
  """The training state at step 0: params and the optimizer's state over them."""
  return CondensedState(params, tx.init(params))


StepFn = Callable[[CondensedState, Layers, jax.Array, jax.Array],
                  tuple[CondensedState, jax.Array]]


def make_train_step(tx: optax.GradientTransformation) -> StepFn:
  """Builds the (unjitted) condensed train step.

  Args:
    tx: the optax transformation, learning rate included (e.g. `optax.adam(1e-3)`).

  Returns:
    step(state, structure, x, labels) -> (new state, the batch's loss before
    the update): one gradient step on the mean cross-entropy.
  """

  def step(state: CondensedState, structure: Layers, x: jax.Array,
           labels: jax.Array) -> tuple[CondensedState, jax.Array]:
    loss, grads = jax.value_and_grad(mlp_loss)(state.params, structure, x, labels)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return CondensedState(optax.apply_updates(state.params, updates), opt_state), loss

  return step


def dense_gradients(params: Layers, structure: Layers, x: jax.Array,
                    labels: jax.Array) -> list[jax.Array]:
  """d loss / d W[i, o] at every position of every layer's dense kernel: h_l^T @ dy_l.

  h_l is the layer's input and dy_l the gradient at its pre-activation,
  obtained as the gradient of a zero offset added there.
  """
  batch = x.shape[0]
  offsets = [jnp.zeros((layer["bias"].shape[0], batch), layer["bias"].dtype)
             for layer in params]

  def loss(offsets):
    h, inputs = jnp.asarray(x).reshape((batch, -1)).T, []
    for index, (layer, wiring, offset) in enumerate(zip(params, structure, offsets)):
      inputs.append(h)
      h = (condensed_dense_t(h, wiring["indices"], layer_values(layer, wiring),
                             wiring["fanout"]) + layer["bias"][:, None] + offset)
      if index < len(params) - 1:
        h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h.T, labels).mean(), inputs

  dys, inputs = jax.grad(loss, has_aux=True)(offsets)
  return [ht @ dyt.T for ht, dyt in zip(inputs, dys)]
