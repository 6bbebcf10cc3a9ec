"""Populations: K runs of one setup trained together in one compiled program.

A population stacks K TrainStates along a new leading axis (params, masks,
optimizer state, step, rng, mask-update state: each replica its own init,
masks and per-step randomness), `vmap`s the train step over it and gives each
replica its own data order (its seed's). Everything else is a single run's:
each replica writes its checkpoints, history and TensorBoard events into its
own directory, exactly where a single run of that seed would, so a replica's
directory reads back like a single run's.

Checkpoints are saved replica by replica and stale resume points are dropped
only once every replica saved the new step, so a kill between two replicas'
saves always leaves a step every replica holds; resuming restores all
replicas from the newest such step.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lotto.core.errors import ConfigError, Diverged
from lotto.data.batching import batch_indices
from lotto.dynamic.update import MaskUpdate
from lotto.runtime.checkpoints import Checkpointer
from lotto.runtime.devices import note
from lotto.runtime.metrics import HistoryWriter, ProgressWriter, TensorBoardWriter, progress_mode
from lotto.train.hooks import Hook
from lotto.train.loop import mask_and_lr_scalars, next_block_end, run_due_hooks, summary_of
from lotto.train.state import TrainState
from lotto.train.trainer import Trainer, TrainSetup


def stack(states: Sequence[TrainState]) -> TrainState:
  """K states of equal structure as one state with a leading replica axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def replica(state: TrainState, index: int) -> TrainState:
  """Replica `index` of a stacked state (a single run's state)."""
  return jax.tree.map(lambda leaf: leaf[index], state)


class PopulationTrainer(Trainer):
  """A `Trainer` whose state carries K replicas, one per seed, trained in one program.

  `run_block` returns per-replica mean metrics ([K] arrays); `evaluate`
  returns one dict per replica. The data order of replica i is that of
  `seeds[i]`, as in a single run of that seed.
  """
  population = True

  def __init__(self, experiment: TrainSetup, seeds: Sequence[int],
               mask_update: MaskUpdate | None = None):
    if experiment.mesh is not None:
      raise ConfigError("a population (config.seeds) runs on one device; set "
                        "data_parallel=off")
    self.seeds = tuple(int(s) for s in seeds)
    super().__init__(experiment, mask_update)

  def current_step(self, state: TrainState) -> int:
    return int(state.step[0])

  def block_indices(self, seed: int, start: int, num_steps: int) -> np.ndarray:
    """[num_steps, K, batch]: each replica's examples in its own seed's order."""
    exp = self.experiment
    return np.stack([batch_indices(s, len(exp.dataset.x_train), exp.batch_size, start, num_steps)
                     for s in self.seeds], axis=1)

  def mean_over_steps(self, values: np.ndarray) -> np.ndarray:
    return np.mean(values, axis=0)

  def evaluate(self, state: TrainState, split: str) -> list[dict[str, float]]:  # type: ignore[override]
    """Per replica: mean loss and accuracy on "val" or "test" ({} if the split is empty)."""
    data = self.splits[split]
    if data.size == 0:
      return [{} for _ in self.seeds]
    loss, correct = jax.device_get(self._evaluate(state.params, state.masks, state.batch_stats,
                                                  data.x, data.y, data.weights))
    return [{"loss": float(l) / data.size, "accuracy": float(c) / data.size}
            for l, c in zip(loss, correct)]


class PopulationCheckpoints:
  """One `Checkpointer` per replica directory, saved and restored in step."""

  def __init__(self, directories: Sequence[str], keep: set[int]):
    self.checkpointers = [Checkpointer(os.path.join(d, "checkpoints"), keep=keep)
                          for d in directories]

  def save(self, step: int, state: TrainState, payloads: Sequence[dict]) -> None:
    for index, (checkpointer, payload) in enumerate(zip(self.checkpointers, payloads)):
      checkpointer.save(step, replica(state, index), payload, drop_stale=False)
    for checkpointer in self.checkpointers:  # only now: every replica holds `step`
      checkpointer.drop_stale(step)

  def restore_latest(self, targets: Sequence[TrainState], min_step: int
                     ) -> tuple[int, list[TrainState], list[dict]] | None:
    """The newest step >= `min_step` every replica holds and restores, or None.

    A damaged replica checkpoint is reported and deleted, and the next older
    common step is tried (training is deterministic, so starting earlier
    gives the same numbers).
    """
    for step in sorted((s for s in self._common_steps() if s >= min_step), reverse=True):
      restored = []
      for checkpointer, target in zip(self.checkpointers, targets):
        try:
          restored.append(checkpointer.restore(step, target))
        except Exception as error:  # pylint: disable=broad-except  # orbax raises many kinds
          note(f"damaged checkpoint {checkpointer.directory}/{step} "
               f"({type(error).__name__}): deleted; resuming from the one before")
          checkpointer.delete(step)
          break
      else:
        return step, [s for s, _ in restored], [p for _, p in restored]
    return None

  def _common_steps(self) -> set[int]:
    return set.intersection(*(set(c.steps()) for c in self.checkpointers))

  def latest_step(self) -> int | None:
    """The newest step every replica holds (None if none)."""
    return max(self._common_steps(), default=None)

  def close(self) -> None:
    for checkpointer in self.checkpointers:
      checkpointer.close()


def population_train_run(trainer: PopulationTrainer, directories: Sequence[str],
                         initial_states: Sequence[TrainState], end_step: int | None = None,
                         keep: tuple[int, ...] = (), label: str = "",
                         hooks: Sequence[Hook] = ()) -> tuple[TrainState, list[dict]]:
  """`loop.train_run` for K replicas at once: replica i in `directories[i]`.

  Trains the stacked `initial_states` (all at the same step) to `end_step`,
  resuming from the newest checkpoint every replica holds; evaluation records,
  checkpoints (with each replica's history) and TensorBoard events go to each
  replica's directory as a single run's would; progress shows the replicas'
  mean.

  Returns:
    (final stacked state, one summary per replica as `train_run` returns it).

  Raises:
    Diverged: with `train.on_nan = "stop"`, a replica's loss is not finite
      (it names the first such replica's directory).
  """
  exp = trainer.experiment
  end_step = exp.total_steps if end_step is None else end_step
  count = len(directories)
  keep_steps = set(keep) | {end_step}
  checkpoints = PopulationCheckpoints(directories, keep_steps)
  states, histories, prior = list(initial_states), [[] for _ in directories], [0.0] * count
  restored = checkpoints.restore_latest(initial_states, int(initial_states[0].step))
  if restored is not None:
    latest, states, payloads = restored
    histories = [p.get("history", []) for p in payloads]
    prior = [float(p.get("wall_time_s", 0.0)) for p in payloads]
    if exp.verbose and latest < end_step:
      note(f"{label + ' | ' if label else ''}resuming {count} replicas from step {latest}")
  state = trainer.place(stack(states))
  step = trainer.current_step(state)
  recorders = [HistoryWriter(h) for h in histories]
  progress, boards = _writers(exp, directories, end_step, step,
                              f"{label or 'train'} ({count} seeds)")
  started = time.perf_counter()

  def payloads():
    elapsed = time.perf_counter() - started
    return [{"history": r.history, "wall_time_s": p + elapsed} for r, p in zip(recorders, prior)]

  try:
    if step in keep_steps and step != checkpoints.latest_step():
      checkpoints.save(step, state, payloads())
    while step < end_step:
      target, due = next_block_end(exp, step, end_step, sorted(keep_steps), hooks)
      state, metrics = trainer.run_block(state, target - step)
      step = target
      finite = np.isfinite(metrics["loss"])
      if exp.on_nan == "stop" and not finite.all():
        first = int(np.flatnonzero(~finite)[0])
        raise Diverged(step, directories[first], checkpoints.latest_step())
      state = run_due_hooks(trainer, hooks, due, step, state)
      if step % exp.eval_every == 0 or step == end_step:
        _evaluate_replicas(trainer, state, step, metrics, recorders, progress, boards)
      if step % exp.checkpoint_every == 0 or step in keep_steps:
        checkpoints.save(step, state, payloads())
  finally:
    for writer in ([progress] if progress else []) + boards:
      writer.close()
    checkpoints.close()
  tests = trainer.evaluate(state, "test")
  elapsed = time.perf_counter() - started
  summaries = []
  for index, (recorder, test) in enumerate(zip(recorders, tests)):
    summary = summary_of(exp, replica(state, index), recorder.history, test)
    summary.update(history=recorder.history, wall_time_s=prior[index] + elapsed)
    summaries.append(summary)
  return state, summaries


def _writers(exp, directories: Sequence[str], end_step: int, start_step: int, label: str
             ) -> tuple[ProgressWriter | None, list[TensorBoardWriter]]:
  """Progress of the replicas' mean on stdout, TensorBoard events in each replica's directory."""
  mode = progress_mode(exp.verbose)
  progress = None
  if mode is not None:
    progress = ProgressWriter(end_step, label, mode)
    progress.start(start_step)
  boards = [TensorBoardWriter(d, start_step) for d in directories] if exp.tensorboard else []
  return progress, boards


def _evaluate_replicas(trainer: PopulationTrainer, state: TrainState, step: int,
                       metrics: dict[str, np.ndarray], recorders: Sequence[HistoryWriter],
                       progress: ProgressWriter | None,
                       boards: Sequence[TensorBoardWriter]) -> None:
  """Each replica's evaluation record to its history (and TensorBoard); the mean to progress."""
  exp = trainer.experiment
  evaluations = {split: trainer.evaluate(state, split) for split in ("val", "test")}
  records = []
  for index, recorder in enumerate(recorders):
    record = {"train_loss": float(metrics["loss"][index]),
              "train_accuracy": float(metrics["accuracy"][index])}
    for split, per_replica in evaluations.items():
      record.update({f"{split}_{k}": v for k, v in per_replica[index].items()})
    recorder.write_scalars(step, record)
    if boards:
      boards[index].write_scalars(step, {**record,
                                         **mask_and_lr_scalars(exp, replica(state, index))})
    records.append(record)
  if progress is not None:
    progress.write_scalars(step, {k: float(np.mean([r[k] for r in records])) for k in records[0]})

