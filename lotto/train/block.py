"""A block of train steps: the compiled unit of training.

Two ways a block gets its batches, one step function:

- resident (`make_train_block`): the training set lives on the device; the block
  receives the int32 batch indices of its steps ([num_steps, batch]) and gathers
  each batch inside the compiled code;
- streamed (`make_stream_block`): the host has read the block's examples in that
  same order (`lotto.data.StepStream`); the block receives them as
  [num_steps, batch, ...] arrays and feeds step i its row i.

Either way step i sees the same raw batch, so both give the same params. Loops
over blocks, levels and runs stay in Python.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lotto.train.state import TrainState
from lotto.train.step import Metrics, StepFn

BlockFn = Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, Metrics]]
StreamBlockFn = Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, Metrics]]
# take(consts, row) -> (raw inputs, labels) of one step (of every replica when batched).
Take = Callable[[tuple, Any], tuple[jax.Array, jax.Array]]


def _block(step_fn: StepFn, loop: str, first_step_fn: StepFn | None, batched: bool,
           take: Take) -> Callable:
  """block(state, consts, rows): the steps over the leading axis of `rows` (a pytree),
  each step's batch `take(consts, row)`; scanned (not yet jitted) or stepwise."""

  def one_step(fn, state, consts, row):
    if batched:
      return jax.vmap(lambda s, r: fn(s, *take(consts, r)))(state, row)
    return fn(state, *take(consts, row))

  if loop not in ("scan", "step"):
    raise ValueError(f"unknown train loop {loop!r}: scan or step")
  if loop == "step":
    jitted = jax.jit(functools.partial(one_step, step_fn), donate_argnums=0)
    jitted_first = jitted if first_step_fn is None else jax.jit(
        functools.partial(one_step, first_step_fn), donate_argnums=0)

    def stepwise(state, consts, rows):
      history = []
      for index in range(jax.tree.leaves(rows)[0].shape[0]):
        row = jax.tree.map(lambda r, i=index: r[i], rows)
        state, metrics = (jitted_first if index == 0 else jitted)(state, consts, row)
        history.append(metrics)
      return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return stepwise

  def scan(state, consts, rows):
    return jax.lax.scan(lambda carry, row: one_step(step_fn, carry, consts, row), state, rows)

  if first_step_fn is None:
    return scan

  def block(state, consts, rows):
    state, first = one_step(first_step_fn, state, consts, jax.tree.map(lambda r: r[0], rows))
    if jax.tree.leaves(rows)[0].shape[0] == 1:
      return state, jax.tree.map(lambda v: v[None], first)
    state, rest = scan(state, consts, jax.tree.map(lambda r: r[1:], rows))
    return state, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)

  return block


def _gather(consts, row):
  x_train, y_train = consts
  return x_train[row], y_train[row]


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
  inner = _block(step_fn, loop, first_step_fn, batched, _gather)
  if loop == "step":
    return lambda state, x_train, y_train, indices: inner(state, (x_train, y_train), indices)

  def block(state, x_train, y_train, indices):
    return inner(state, (x_train, y_train), indices)

  return jax.jit(block, donate_argnums=0)


def _streamed(consts, row):
  del consts
  return row


def make_stream_block(step_fn: StepFn, loop: str = "scan",
                      first_step_fn: StepFn | None = None,
                      batched: bool = False) -> StreamBlockFn:
  """`make_train_block` for batches read on the host (the `stream` pipeline).

  Args:
    step_fn, loop, first_step_fn, batched: as `make_train_block`.

  Returns:
    block(state, x[num_steps, batch, ...], y[num_steps, batch, ...]) -> (state,
    metrics stacked over the block's steps); with `batched`, x and y are
    [num_steps, K, batch, ...].
  """
  inner = _block(step_fn, loop, first_step_fn, batched, _streamed)
  if loop == "step":
    return lambda state, x, y: inner(state, (), (x, y))

  def block(state, x, y):
    return inner(state, (), (x, y))

  return jax.jit(block, donate_argnums=0)
