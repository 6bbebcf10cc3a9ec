"""The compiled train and eval functions of one setup, with its data on the device.

`Trainer` is built once per setup (and reused across IMP levels, branches and
seeds of the same shapes), so each compiled function is traced once. It reads
a `TrainSetup`: any object with the fields below (the jobs' `Experiment` is
one); `lotto.train` never builds models or reads configs itself.
"""
from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from lotto.core.types import PyTree
from lotto.data.batching import batch_indices
from lotto.data.inputs import InputSpec
from lotto.data.registry import Dataset
from lotto.dynamic.update import MaskUpdate
from lotto.runtime import devices
from lotto.train.block import make_train_block
from lotto.train.evaluate import EvalSet, make_eval_fn
from lotto.train.optim import Schedule
from lotto.train.state import TrainState
from lotto.train.step import make_train_step


class TrainSetup(Protocol):
  """What training needs to know (the jobs' `Experiment` provides it)."""
  seed: int
  dataset: Dataset
  model: Any            # anything with Flax's `apply(variables, x, train=...)`
  tx: optax.GradientTransformation
  schedule: Schedule
  batch_size: int
  eval_batch_size: int
  total_steps: int
  eval_every: int
  checkpoint_every: int
  prunable: PyTree
  mesh: Mesh | None
  loop: str             # auto | scan | step
  params_shape: PyTree
  verbose: int          # 0 quiet, 1 progress bar / heartbeat, 2 a line per evaluation
  tensorboard: bool     # write TensorBoard event files in each run's directory
  on_nan: str           # "stop": raise Diverged on a non-finite loss | "continue"


class Trainer:
  """Compiled train/eval functions of one `TrainSetup`, with its data on device.

  Attributes:
    experiment: the setup it was built from.
    loop: the resolved train loop ("scan" or "step").
    splits: the "val" and "test" evaluation sets on the device.
  """
  population = False  # `lotto.train.population.PopulationTrainer`: a leading replica axis

  def __init__(self, experiment: TrainSetup, mask_update: MaskUpdate | None = None):
    self.experiment = exp = experiment
    inputs = InputSpec.of(exp.dataset)
    step_fn = make_train_step(exp.model.apply, exp.tx, exp.schedule, inputs, mesh=exp.mesh)
    update_step_fn = None if mask_update is None else make_train_step(
        exp.model.apply, exp.tx, exp.schedule, inputs, mask_update=mask_update, mesh=exp.mesh)
    # Blocks start at every mask-update step; only a block's first step carries the update.
    self._update_steps = tuple(mask_update.due_steps) if mask_update is not None else ()
    self.loop = devices.choose_train_loop(exp.loop)
    self._block = make_train_block(step_fn, self.loop, first_step_fn=update_step_fn,
                                   population=self.population)
    self._evaluate = make_eval_fn(exp.model.apply, inputs, population=self.population)
    self.splits = {
        "val": EvalSet.create(exp.dataset.x_val, exp.dataset.y_val, exp.eval_batch_size),
        "test": EvalSet.create(exp.dataset.x_test, exp.dataset.y_test, exp.eval_batch_size)}
    self._x_train = devices.replicate(jnp.asarray(exp.dataset.x_train), exp.mesh)
    self._y_train = devices.replicate(jnp.asarray(exp.dataset.y_train), exp.mesh)

  def place(self, state: TrainState) -> TrainState:
    """A private copy of `state` on the device(s), replicated over the mesh if any.

    The train block donates its input; copying here means the caller's arrays
    (a rewind point, a mask it holds) are never invalidated.
    """
    return devices.replicate(jax.tree.map(jnp.copy, state), self.experiment.mesh)

  def run_block(self, state: TrainState, num_steps: int,
                data_seed: int | None = None) -> tuple[TrainState, dict[str, float]]:
    """Runs `num_steps` steps from `state.step` in one compiled block.

    `state` is donated (invalid afterwards); pass `place(state)` to keep it.
    `data_seed` picks the data order (default: the experiment's seed); the
    instability analysis trains copies under different orders.

    Returns:
      (new state, mean train loss and accuracy over the block's steps).
    """
    exp = self.experiment
    seed = exp.seed if data_seed is None else data_seed
    start = self.current_step(state)
    cuts = [start] + [s for s in self._update_steps if start < s < start + num_steps]
    cuts.append(start + num_steps)
    collected = []
    for begin, end in zip(cuts[:-1], cuts[1:]):  # a mask update only at a block's first step
      indices = devices.shard_rows(jnp.asarray(self.block_indices(seed, begin, end - begin)),
                                   exp.mesh)
      state, metrics = self._block(state, self._x_train, self._y_train, indices)
      collected.append(metrics)
    metrics = {k: np.concatenate([np.asarray(m[k]) for m in jax.device_get(collected)])
               for k in collected[0]}
    return state, {k: self.mean_over_steps(v) for k, v in metrics.items()}

  def mean_over_steps(self, values: np.ndarray):
    """A block's metric ([num_steps]) averaged over its steps: a float."""
    return float(np.mean(values))

  def current_step(self, state: TrainState) -> int:
    """The global step `state` sits at."""
    return int(state.step)

  def block_indices(self, seed: int, start: int, num_steps: int) -> np.ndarray:
    """The example indices of steps [start, start + num_steps): [num_steps, batch]."""
    exp = self.experiment
    return batch_indices(seed, len(exp.dataset.x_train), exp.batch_size, start, num_steps)

  def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
    """Mean loss and accuracy on "val" or "test" (BN in eval mode); {} if the split is empty."""
    data = self.splits[split]
    if data.size == 0:
      return {}
    loss, correct = self._evaluate(state.params, state.masks, state.batch_stats,
                                   data.x, data.y, data.weights)
    return {"loss": float(loss) / data.size, "accuracy": float(correct) / data.size}
