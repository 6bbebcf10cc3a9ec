"""The train loop of K >= 1 replicas: blocks of steps between evaluations, checkpoints
and hooks.

`train_replicas` runs a `Trainer`'s compiled blocks (`Trainer.run_block`)
whose boundaries fall on every evaluation, checkpoint, kept step and hook
step. Each replica writes what a single run writes into its own directory
(checkpoints with its JSON history, TensorBoard events), resumes from the
newest checkpoint every replica holds, and gets its own summary; progress
on stdout shows the replicas' mean. `train_run` is the one-replica call of
the same loop: a killed run re-run with the same arguments ends with the same
params as an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import time
from typing import Sequence

import numpy as np

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError, Diverged
from lotto.dynamic.update import latest_update_scalars
from lotto.runtime import interrupts
from lotto.runtime.checkpoints import Checkpointer, ReplicaCheckpoints
from lotto.runtime.devices import note
from lotto.runtime.metrics import (HistoryWriter, MetricWriter, ProgressWriter, TensorBoardWriter,
                                   progress_mode)
from lotto.train.evaluate import LANGUAGE_METRICS, early_stopping, prefixed, split_metrics
from lotto.train.hooks import Hook
from lotto.train.state import TrainState
from lotto.train.trainer import Trainer


def train_replicas(trainer: Trainer, directories: Sequence[str],
                   initial_states: Sequence[TrainState], end_step: int | None = None,
                   keep: tuple[int, ...] = (), label: str = "", hooks: Sequence[Hook] = (),
                   writer: MetricWriter | None = None,
                   data_seeds: Sequence[int] | None = None
                   ) -> tuple[list[TrainState], list[dict]]:
  """Trains the trainer's replicas from `initial_states` (all at one step) to `end_step`.

  Replica i checkpoints in `directories[i]/checkpoints`; if the replicas hold
  checkpoints, training restarts from the newest step they all hold (whose
  structure must match the initial states). Blocks end at every multiple of
  `eval_every` and `checkpoint_every`, at every kept step, at every hook's
  next step and at `end_step`. At a block's end, first the hooks due there run
  (each may replace the state), then at evaluation steps each replica's record
  {step, train_loss, train_accuracy, val_*, test_*} (a language model's also *_bpc and
  *_perplexity) goes to its history, and
  the same record plus the learning rate and the global and per-layer density
  ("density/<layer>") to the writers; then every replica's checkpoint (state,
  history and wall time so far) is saved at multiples of `checkpoint_every`,
  at kept steps and at the end.

  Args:
    trainer: compiled functions and data, for `len(directories)` replicas.
    directories: each replica's run directory.
    initial_states: each replica's start (its step may be > 0: a rewind).
    end_step: the global step to stop at (default: the setup's total steps).
    keep: steps whose checkpoints are kept (rewind points); the end always is.
    label: names the run in progress lines.
    hooks: run between blocks at the steps they name, on the replicas' state
      (`trainer.stack` of them); a hook may return a state to continue from.
    writer: receives every evaluation record (the replicas' mean) instead of
      the default writers (`default_writers`).
    data_seeds: each replica's data order (default: the trainer's seeds).

  Returns:
    (each replica's final state, each replica's summary: final and
    early-stopping metrics, density, per-layer density, steps, "history" and
    "wall_time_s"; with `train.on_nan = "continue"`, a replica whose mean loss
    over a block was not finite also gets "diverged": True and the step that
    block ended at, "diverged_at_step", kept across resumes).

  Raises:
    Diverged: with `train.on_nan = "stop"`, a replica's mean loss over a
      block is not finite (raised before anything of that step is saved; it
      names the first such replica's directory).
    Interrupted: a stop was requested (`runtime.interrupts`: SIGTERM or
      SIGINT under the `lotto` command); raised at the next block boundary,
      after the replicas' state at that step is saved.
  """
  exp = trainer.experiment
  count = len(trainer.seeds)
  if len(directories) != count or len(initial_states) != count:
    raise ValueError(f"a trainer of {count} replicas got {len(directories)} directories and "
                     f"{len(initial_states)} initial states")
  end_step = exp.total_steps if end_step is None else end_step
  keep_steps = set(keep) | {end_step}
  checkpoints = ReplicaCheckpoints(directories, keep_steps)
  states, histories, prior = list(initial_states), [[] for _ in directories], [0.0] * count
  diverged_at: list[int | None] = [None] * count  # on_nan=continue: the first non-finite step
  # The per-step train metrics since the last evaluation (its record averages them all).
  pending: dict[str, list[np.ndarray]] = {"loss": [], "accuracy": []}
  restored = checkpoints.restore_latest(initial_states, int(initial_states[0].step))
  if restored is not None:
    latest, states, payloads = restored
    histories = [p.get("history", []) for p in payloads]
    prior = [float(p.get("wall_time_s", 0.0)) for p in payloads]
    diverged_at = [p.get("diverged_at_step") for p in payloads]
    pending = _restore_pending(trainer, payloads)
    if exp.verbose and latest < end_step:
      what = f"resuming {count} replicas" if count > 1 else "resuming"
      note(f"{label + ' | ' if label else ''}{what} from step {latest}")
  state = trainer.place(trainer.stack(states))
  step = trainer.current_step(state)
  recorders = [HistoryWriter(h) for h in histories]
  owned = writer is None
  writers = default_writers(exp, directories, end_step, step, label) if owned else \
      ReplicaWriters(writer, [])
  started = time.perf_counter()

  def payloads():
    elapsed = time.perf_counter() - started
    return [{"history": r.history, "wall_time_s": p + elapsed,
             **({} if d is None else {"diverged_at_step": d}), **_pending_payload(pending, i)}
            for i, (r, p, d) in enumerate(zip(recorders, prior, diverged_at))]

  try:
    if step in keep_steps and step != checkpoints.latest_step():
      checkpoints.save(step, trainer.unstack(state), payloads())
    while step < end_step:
      target, due = next_block_end(exp, step, end_step, sorted(keep_steps), hooks)
      state, metrics = trainer.run_block(state, target - step, data_seeds)
      step = target
      for key in pending:
        pending[key].append(metrics[key])
      finite = [math.isfinite(loss) for loss in trainer.replica_means(metrics["loss"])]
      if exp.on_nan == "stop" and not all(finite):
        # Before this step's checkpoint: every checkpoint on disk is finite.
        first = checkpoints.checkpointers[finite.index(False)]
        raise Diverged(step, os.path.dirname(first.directory), checkpoints.latest_step())
      diverged_at = [d if d is not None or ok else step for d, ok in zip(diverged_at, finite)]
      state = run_due_hooks(trainer, hooks, due, step, state)
      if step % exp.eval_every == 0 or step == end_step:
        means = {k: trainer.replica_means(np.concatenate(v)) for k, v in pending.items()}
        pending = {k: [] for k in pending}
        write_evaluation(trainer, state, step, means, recorders, writers)
      if step % exp.checkpoint_every == 0 or step in keep_steps:
        checkpoints.save(step, trainer.unstack(state), payloads())
      signum = interrupts.requested()
      if signum is not None and step < end_step:  # a block boundary: a safe point
        checkpoints.save(step, trainer.unstack(state), payloads())  # (once per step)
        raise interrupts.Interrupted(signum, step, os.path.dirname(
            checkpoints.checkpointers[0].directory))
    writers.flush()
  finally:
    if owned:
      writers.close()
    checkpoints.close()
  finals = trainer.unstack(state)
  tests = trainer.evaluate(state, "test")
  elapsed = time.perf_counter() - started
  summaries = []
  for final, recorder, test, before, first in zip(finals, recorders, tests, prior, diverged_at):
    summary = summary_of(exp, trainer.report_state(final), recorder.history, test)
    summary.update(history=recorder.history, wall_time_s=before + elapsed)
    if first is not None:  # trained on with on_nan=continue: the results say so
      summary.update(diverged=True, diverged_at_step=first)
    summaries.append(summary)
  return finals, summaries


def _pending_payload(pending: dict[str, list[np.ndarray]], index: int) -> dict:
  """Replica `index`'s per-step metrics since the last evaluation, for its checkpoint ({} when
  there are none: a checkpoint at an evaluation step). float32 values round-trip through JSON
  exactly, so a run resumed between two evaluations averages the same values."""
  if not pending["loss"]:
    return {}
  columns = {k: np.concatenate(v) for k, v in pending.items()}
  return {"pending_metrics": {k: (v if v.ndim == 1 else v[:, index]).tolist()
                              for k, v in columns.items()}}


def _restore_pending(trainer: Trainer, payloads: Sequence[dict]) -> dict[str, list[np.ndarray]]:
  """The per-step metrics the replicas' checkpoints carried since their last evaluation."""
  saved = [p.get("pending_metrics") for p in payloads]
  if not saved[0]:
    return {"loss": [], "accuracy": []}
  restored = {}
  for key in ("loss", "accuracy"):
    columns = [np.asarray(s[key], np.float32) for s in saved]
    restored[key] = [np.stack(columns, axis=1) if trainer.batched else columns[0]]
  return restored


def train_run(trainer: Trainer, directory: str, initial_state: TrainState,
              end_step: int | None = None, keep: tuple[int, ...] = (), label: str = "",
              hooks: Sequence[Hook] = (), writer: MetricWriter | None = None,
              data_seed: int | None = None) -> tuple[TrainState, dict]:
  """`train_replicas` for a trainer of one replica: (final state, summary).

  If `directory` holds checkpoints, training restarts from the latest one,
  so a killed run re-run with the same arguments ends with the same params
  as an uninterrupted one.
  """
  finals, summaries = train_replicas(
      trainer, [directory], [initial_state], end_step=end_step, keep=keep, label=label,
      hooks=hooks, writer=writer, data_seeds=None if data_seed is None else (data_seed,))
  return finals[0], summaries[0]


def next_block_end(exp, step: int, end_step: int, boundaries: Sequence[int],
                   hooks: Sequence[Hook]) -> tuple[int, list[int | None]]:
  """Where the block starting at `step` ends: the next evaluation, checkpoint, kept step
  (`boundaries`) or hook step, at most `end_step`; and each hook's next step."""
  due = [hook.next_step(step) for hook in hooks]
  candidates = [(step // n + 1) * n for n in (exp.eval_every, exp.checkpoint_every)]
  candidates += [b for b in boundaries if b > step] + [d for d in due if d is not None]
  return min(min(candidates), end_step), due


def run_due_hooks(trainer: Trainer, hooks: Sequence[Hook], due: Sequence[int | None], step: int,
                  state: TrainState) -> TrainState:
  """Runs the hooks due at `step` in order; each may replace the state."""
  for hook, hook_step in zip(hooks, due):
    if hook_step == step:
      replaced = hook(step, state)
      if replaced is not None:
        state = trainer.place(replaced)
  return state


class ReplicaWriters:
  """Where evaluation records go besides the histories: `progress` gets the replicas'
  mean record (a single run's own record), `boards[i]` replica i's."""

  def __init__(self, progress: MetricWriter | None, boards: Sequence[MetricWriter]):
    self.progress, self.boards = progress, list(boards)

  @property
  def active(self) -> bool:
    return self.progress is not None or bool(self.boards)

  def write(self, step: int, records: Sequence[dict]) -> None:
    if self.progress is not None:
      mean = records[0] if len(records) == 1 else {
          k: float(np.mean([r[k] for r in records])) for k in records[0]}
      self.progress.write_scalars(step, mean)
    for board, record in zip(self.boards, records):
      board.write_scalars(step, record)

  def _each(self) -> list[MetricWriter]:
    return ([self.progress] if self.progress is not None else []) + self.boards

  def flush(self) -> None:
    for writer in self._each():
      writer.flush()

  def close(self) -> None:
    for writer in self._each():
      writer.close()


def default_writers(exp, directories: Sequence[str], end_step: int, start_step: int,
                    label: str = "") -> ReplicaWriters:
  """Progress on stdout (`exp.verbose`: 0 none, 1 bar or heartbeat, 2 every evaluation;
  the replicas' mean) and, with `exp.tensorboard`, TensorBoard event files in each
  replica's directory."""
  progress = None
  mode = progress_mode(exp.verbose)
  if mode is not None:
    if len(directories) > 1:
      label = f"{label or 'train'} ({len(directories)} seeds)"
    progress = ProgressWriter(end_step, label, mode)
    progress.start(start_step)
  boards = [TensorBoardWriter(d, start_step) for d in directories] if exp.tensorboard else []
  return ReplicaWriters(progress, boards)


def write_evaluation(trainer: Trainer, state: TrainState, step: int,
                     metrics: dict[str, list[float]], recorders: Sequence[HistoryWriter],
                     writers: ReplicaWriters) -> None:
  """Each replica's evaluation record to its history; with the LR and densities, to the
  writers."""
  exp = trainer.experiment
  evaluations = {split: trainer.evaluate(state, split) for split in ("val", "test")}
  records = []
  for index, recorder in enumerate(recorders):
    train = split_metrics(metrics["loss"][index], metrics["accuracy"][index],
                          exp.dataset.language_model)
    record = prefixed(train, "train")
    for split, per_replica in evaluations.items():
      record.update({f"{split}_{k}": v for k, v in per_replica[index].items()})
    recorder.write_scalars(step, record)
    records.append(record)
  if writers.active:
    finals = trainer.unstack(state)
    writers.write(step, [{**record, **mask_and_lr_scalars(exp, trainer.report_state(final))}
                         for record, final in zip(records, finals)])


def mask_and_lr_scalars(exp, state: TrainState) -> dict[str, float]:
  """What the writers get beyond the history: the LR, global and per-layer density, and for
  masks that change during training the number of updates so far and the fraction of
  positions the latest one flipped."""
  rows = masks_lib.layer_report(state.masks, exp.prunable)  # one host transfer of the masks
  alive, total = sum(r["surviving"] for r in rows), sum(r["total"] for r in rows)
  return {"learning_rate": float(exp.schedule(state.step)), "density": alive / total,
          **{f"density/{r['name']}": r["density"] for r in rows},
          **latest_update_scalars(state.mask_state, total)}


def summary_of(exp, state: TrainState, history: list[dict], test: dict[str, float]) -> dict:
  """Final and early-stopping metrics, density and per-layer density of one replica's
  final `state`, given its final test metrics `test`."""
  return {
      "final_test_accuracy": test["accuracy"],
      "final_test_loss": test["loss"],
      **{f"final_test_{k}": test[k] for k in LANGUAGE_METRICS if k in test},
      **early_stopping(history),
      "density": masks_lib.density(state.masks, exp.prunable),
      "layer_densities": masks_lib.layer_densities(state.masks, exp.prunable),
      "steps": int(state.step),
  }


def load_state(directory: str, step: int, like: TrainState) -> TrainState:
  """The state a `train_run` in `directory` kept at `step` (a rewind point, the end).

  Raises:
    ConfigError: no checkpoint at `step` in `directory`, or a damaged one:
      the message says to delete `directory` so the run recomputes it.
  """
  checkpointer = Checkpointer(os.path.join(directory, "checkpoints"))
  try:
    if step not in checkpointer.steps():
      raise ConfigError(f"no checkpoint at step {step} in {directory}/checkpoints "
                        f"(found {checkpointer.steps()}); delete {directory} to recompute it "
                        "(and what was computed from it)")
    try:
      state, _ = checkpointer.restore(step, like)
    except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many
      raise ConfigError(f"the checkpoint at step {step} in {directory}/checkpoints is damaged "
                        f"({type(error).__name__}); delete {directory} to recompute it (and "
                        "what was computed from it)") from None
  finally:
    checkpointer.close()
  return state
