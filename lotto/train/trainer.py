"""The compiled train and eval functions of one setup, with its data on the device or
streamed to it (the dataset's `pipeline`).

`Trainer` is built once per setup (and reused across IMP levels, branches and
seeds of the same shapes), so each compiled function is traced once. It trains
K >= 1 replicas of the setup, one per seed: one replica runs the step as it is
(a single run, on the device mesh if any); K > 1 replicas are stacked along a
new leading axis (params, masks, optimizer state, step, rng, mask-update
state: each replica its own) and the step is `vmap`ped over them, each replica
with its own data order (its seed's). It reads a `TrainSetup`: any object with
the fields below (the jobs' `Experiment` is one); `lotto.train` never builds
models or reads configs itself.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from lotto.core.errors import ConfigError
from lotto.core.types import PyTree
from lotto.data.batching import batch_indices
from lotto.data.inputs import InputSpec
from lotto.data.registry import Dataset
from lotto.dynamic.update import MaskUpdate
from lotto.runtime import devices
from lotto.train.block import make_train_block
from lotto.train.condensed_state import CondensedLayout, report_view
from lotto.train.condensed_step import make_condensed_eval_fn, make_condensed_step
from lotto.train.evaluate import make_eval_fn, split_metrics
from lotto.train.feed import StreamFeed
from lotto.train.optim import Schedule
from lotto.train.state import TrainState
from lotto.train.streamed_eval import StreamedEvalSet, eval_set
from lotto.train.step import make_train_step


def stack(states: Sequence[TrainState]) -> TrainState:
  """States of equal structure as one state with a leading replica axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def replica(state: TrainState, index: int) -> TrainState:
  """Replica `index` of a stacked state (a single run's state)."""
  return jax.tree.map(lambda leaf: leaf[index], state)


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
  loop: str             # scan | step
  params_shape: PyTree
  verbose: int          # 0 quiet, 1 progress bar / heartbeat, 2 a line per evaluation
  tensorboard: bool     # write TensorBoard event files in each run's directory
  on_nan: str           # "stop": raise Diverged on a non-finite loss | "continue"
  precision: str        # float32 | bfloat16 (`train.precision`)
  resident_limit_mb: float  # `data.resident_limit_mb`: a 16th of it bounds a streamed chunk


class Trainer:
  """Compiled train/eval functions of one `TrainSetup` for K >= 1 replicas, with its data
  on device.

  Every method speaks per replica: `run_block` returns each replica's mean
  metrics and `evaluate` one dict per replica, whatever K is.

  Attributes:
    experiment: the setup it was built from.
    seeds: one per replica; replica i's data order is that of `seeds[i]`.
    batched: K > 1 (states carry a leading replica axis, the step is vmapped).
    loop: the resolved train loop ("scan" or "step").
    splits: the "val" and "test" evaluation sets on the device.
    pipeline: "resident" (the training set on the device, batches gathered by
      index) or "stream" (each block's examples read on the host, `train.feed`):
      the dataset's resolved `pipeline`; both feed the steps the same batches.
  """

  def __init__(self, experiment: TrainSetup, mask_update: MaskUpdate | None = None,
               seeds: Sequence[int] | None = None, layout: CondensedLayout | None = None):
    """`layout`: run condensed (`train.condensed_state`; states from `condense_state`,
    `mask_update` a `dynamic.condensed_regrow.CondensedDropAndGrow`); None: masked."""
    self.experiment = exp = experiment
    self.layout = layout
    self.seeds = (int(exp.seed),) if seeds is None else tuple(int(s) for s in seeds)
    self.batched = len(self.seeds) > 1
    if self.batched and exp.mesh is not None:
      raise ConfigError("replicas trained in one program (config.seeds) run on one device; "
                        "set data_parallel=off")
    inputs = InputSpec.of(exp.dataset)
    precision = exp.precision
    if layout is None:
      step_fn = make_train_step(exp.model.apply, exp.tx, exp.schedule, inputs, mesh=exp.mesh,
                                precision=precision)
      update_step_fn = None if mask_update is None else make_train_step(
          exp.model.apply, exp.tx, exp.schedule, inputs, mask_update=mask_update,
          mesh=exp.mesh, precision=precision)
      self._evaluate = make_eval_fn(exp.model.apply, inputs, batched=self.batched,
                                    precision=precision)
    else:
      step_fn = make_condensed_step(layout, exp.tx, exp.schedule, inputs, mesh=exp.mesh)
      update_step_fn = None if mask_update is None else make_condensed_step(
          layout, exp.tx, exp.schedule, inputs, update=mask_update, mesh=exp.mesh)
      self._evaluate = make_condensed_eval_fn(layout, inputs, batched=self.batched)
    # Blocks start at every mask-update step; only a block's first step carries the update.
    self._update_steps = tuple(mask_update.due_steps) if mask_update is not None else ()
    self.loop = exp.loop
    self.pipeline = exp.dataset.pipeline
    if self.pipeline == "stream":
      self._feed = StreamFeed(exp, step_fn, update_step_fn, self.loop, len(self.seeds),
                              exp.resident_limit_mb)
    else:
      self._block = make_train_block(step_fn, self.loop, first_step_fn=update_step_fn,
                                     batched=self.batched)
    self.splits = {split: eval_set(exp.dataset, split, exp.eval_batch_size,
                                   exp.resident_limit_mb) for split in ("val", "test")}
    if self.pipeline == "resident":
      self._x_train = devices.replicate(jnp.asarray(exp.dataset.x_train), exp.mesh)
      self._y_train = devices.replicate(jnp.asarray(exp.dataset.y_train), exp.mesh)

  def stack(self, states: Sequence[TrainState]) -> TrainState:
    """The replicas' states as the one state the compiled functions take (a single
    replica's state is used as it is)."""
    return stack(states) if self.batched else states[0]

  def unstack(self, state: TrainState) -> list[TrainState]:
    """Each replica's state (a single run's state) out of `stack`'s result."""
    if not self.batched:
      return [state]
    return [replica(state, index) for index in range(len(self.seeds))]

  def report_state(self, state: TrainState) -> TrainState:
    """One replica's state as reports read it: itself, or a condensed state with its dense
    masks (`condensed_state.report_view`)."""
    return state if self.layout is None else report_view(state, self.layout)

  def place(self, state: TrainState) -> TrainState:
    """A private copy of `state` on the device(s), replicated over the mesh if any.

    The train block donates its input; copying here means the caller's arrays
    (a rewind point, a mask it holds) are never invalidated.
    """
    return devices.replicate(jax.tree.map(jnp.copy, state), self.experiment.mesh)

  def run_block(self, state: TrainState, num_steps: int, data_seeds: Sequence[int] | None = None
                ) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Runs `num_steps` steps from the replicas' step in one compiled block.

    `state` is donated (invalid afterwards); pass `place(state)` to keep it.
    `data_seeds` picks each replica's data order (default: `seeds`); the
    instability analysis trains copies under different orders.

    Returns:
      (new state, the train loss and accuracy of every step: {"loss": [num_steps]
      or [num_steps, K] array, "accuracy": likewise}; `replica_means` averages them).
    """
    seeds = self.seeds if data_seeds is None else tuple(int(s) for s in data_seeds)
    start = self.current_step(state)
    cuts = [start] + [s for s in self._update_steps if start < s < start + num_steps]
    cuts.append(start + num_steps)
    collected = []
    for begin, end in zip(cuts[:-1], cuts[1:]):  # a mask update only at a block's first step
      if self.pipeline == "stream":
        state, metrics = self._feed.run(state, seeds, begin, end)
        collected.extend(metrics)
        continue
      indices = devices.shard_rows(jnp.asarray(self.block_indices(seeds, begin, end - begin)),
                                   self.experiment.mesh)
      state, metrics = self._block(state, self._x_train, self._y_train, indices)
      collected.append(metrics)
    return state, {k: np.concatenate([np.asarray(m[k]) for m in jax.device_get(collected)])
                   for k in collected[0]}

  def replica_means(self, values: np.ndarray) -> list[float]:
    """Each replica's mean over steps of `run_block`'s values ([steps] or [steps, K])."""
    if not self.batched:  # the mean exactly as a single run always took it
      return [float(np.mean(values))]
    return [float(m) for m in np.mean(values, axis=0)]

  def current_step(self, state: TrainState) -> int:
    """The global step the replicas sit at (they move in step)."""
    return int(state.step[0]) if self.batched else int(state.step)

  def block_indices(self, seeds: Sequence[int], start: int, num_steps: int) -> np.ndarray:
    """The example indices of steps [start, start + num_steps) in each seed's order:
    [num_steps, batch] for one replica, [num_steps, K, batch] for K > 1."""
    exp = self.experiment
    rows = [batch_indices(seed, exp.dataset.num_train, exp.batch_size, start, num_steps)
            for seed in seeds]
    return np.stack(rows, axis=1) if self.batched else rows[0]

  def evaluate(self, state: TrainState, split: str) -> list[dict[str, float]]:
    """Per replica: mean loss and accuracy on "val" or "test" (BN in eval mode), for a
    language model also bits per character and perplexity (`split_metrics`); {} if the
    split is empty."""
    data = self.splits[split]
    count = state.step.shape[0] if self.batched else 1
    if data.size == 0:
      return [{} for _ in range(count)]
    if isinstance(data, StreamedEvalSet):  # read from disk a chunk at a time
      loss, correct = data.sums(self._evaluate, state.params, state.masks, state.batch_stats)
    else:
      loss, correct = jax.device_get(self._evaluate(
          state.params, state.masks, state.batch_stats, data.x, data.y, data.weights))
    if not self.batched:
      loss, correct = [loss], [correct]
    language_model = self.experiment.dataset.language_model
    return [split_metrics(float(l) / data.size, float(c) / data.size, language_model)
            for l, c in zip(loss, correct)]
