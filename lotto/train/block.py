"""A block of train steps over on-device data: the compiled unit of training.

The training set lives on the device; a block receives the int32 batch
indices of its steps ([num_steps, batch]) and gathers each batch inside the
compiled code. Loops over blocks, levels and runs stay in Python.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from lotto.train.state import TrainState
from lotto.train.step import Metrics, StepFn

BlockFn = Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, Metrics]]


def make_train_block(step_fn: StepFn, loop: str = "scan",
                     first_step_fn: StepFn | None = None, batched: bool = False) -> BlockFn:
  """A block of training steps over on-device data; donates the state.

  Args:
    step_fn: from `step.make_train_step`.
    loop: "scan" compiles the whole block as one `lax.scan`; "step" jits one
      step (batch gathered on device) and calls it per step from Python (one
      compile for blocks of any length). `train.loop` chooses; "scan" is
      the default.
    first_step_fn: if given, the block's first step runs this instead (the
      step with the mask-update seam), the others `step_fn`. The Trainer
      starts a block at every mask-update step, so the update's `lax.cond` is
      evaluated once per block rather than in every step (BUILD_NOTES.md).
    batched: the state carries a leading axis of K replicas and every
      step is `vmap`ped over it; indices are [num_steps, K, batch] (each
      replica its own data order) and metrics [num_steps, K].

  Returns:
    block(state, x_train, y_train, indices[num_steps, batch]) ->
    (state, metrics stacked over the block's steps).
  """

  def gather_step(fn, state, x_train, y_train, batch_index):
    if batched:
      return jax.vmap(lambda s, rows: fn(s, x_train[rows], y_train[rows]))(state, batch_index)
    return fn(state, x_train[batch_index], y_train[batch_index])

  if loop not in ("scan", "step"):
    raise ValueError(f"unknown train loop {loop!r}: scan or step")
  if loop == "step":
    jitted = jax.jit(functools.partial(gather_step, step_fn), donate_argnums=0)
    jitted_first = jitted if first_step_fn is None else jax.jit(
        functools.partial(gather_step, first_step_fn), donate_argnums=0)

    def stepwise(state, x_train, y_train, indices):
      history = []
      for row in range(indices.shape[0]):
        state, metrics = (jitted_first if row == 0 else jitted)(state, x_train, y_train,
                                                                 indices[row])
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return stepwise

  def scan(state, x_train, y_train, indices):
    return jax.lax.scan(lambda carry, row: gather_step(step_fn, carry, x_train, y_train, row),
                        state, indices)

  if first_step_fn is None:
    return jax.jit(scan, donate_argnums=0)

  def block(state, x_train, y_train, indices):
    state, first = gather_step(first_step_fn, state, x_train, y_train, indices[0])
    if indices.shape[0] == 1:
      return state, jax.tree.map(lambda v: v[None], first)
    state, rest = scan(state, x_train, y_train, indices[1:])
    return state, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)

  return jax.jit(block, donate_argnums=0)
