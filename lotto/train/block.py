"""A block of train steps over on-device data: the compiled unit of training.

The training set lives on the device; a block receives the int32 batch
indices of its steps ([num_steps, batch]) and gathers each batch inside the
compiled code. Loops over blocks, levels and runs stay in Python.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from lotto.train.state import TrainState
from lotto.train.step import Metrics, StepFn

BlockFn = Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, Metrics]]


def make_train_block(step_fn: StepFn, loop: str = "scan") -> BlockFn:
  """A block of training steps over on-device data; donates the state.

  Args:
    step_fn: from `step.make_train_step`.
    loop: "scan" compiles the whole block as one `lax.scan`; "step" jits one
      step (batch gathered on device) and calls it per step from Python. On
      XLA:CPU, convolutions inside a scan body run ~20x slower than in a
      standalone jitted step (measured on ResNet-20; see BUILD_NOTES.md), so
      conv nets on CPU use "step" (`runtime.devices.choose_train_loop`).

  Returns:
    block(state, x_train, y_train, indices[num_steps, batch]) ->
    (state, metrics stacked over the block's steps).
  """

  def gather_step(state, x_train, y_train, batch_index):
    return step_fn(state, x_train[batch_index], y_train[batch_index])

  if loop == "step":
    jitted = jax.jit(gather_step, donate_argnums=0)

    def stepwise(state, x_train, y_train, indices):
      history = []
      for row in range(indices.shape[0]):
        state, metrics = jitted(state, x_train, y_train, indices[row])
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return stepwise

  def block(state, x_train, y_train, indices):
    return jax.lax.scan(lambda carry, row: gather_step(carry, x_train, y_train, row),
                        state, indices)

  return jax.jit(block, donate_argnums=0)
