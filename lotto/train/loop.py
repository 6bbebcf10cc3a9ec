"""The train loop: blocks of steps between evaluations, checkpoints and hooks.

`train_loop` runs compiled blocks (`Trainer.run_block`) whose boundaries fall
on every evaluation, checkpoint, kept step and hook step; it hands every
evaluation record to one metric writer (the JSON history always, progress
lines and other writers as given). `train_run` adds resuming from the
latest checkpoint in a directory, so a killed run re-run with the same
arguments ends with the same params as an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import time
from typing import Sequence

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError, Diverged
from lotto.dynamic.update import latest_update_scalars
from lotto.runtime.checkpoints import Checkpointer
from lotto.runtime.devices import note
from lotto.runtime.metrics import (HistoryWriter, MetricWriter, MultiWriter, ProgressWriter,
                                   TensorBoardWriter, progress_mode)
from lotto.train.evaluate import early_stopping
from lotto.train.hooks import Hook
from lotto.train.state import TrainState
from lotto.train.trainer import Trainer


def train_loop(trainer: Trainer, state: TrainState, checkpointer: Checkpointer | None,
               end_step: int, history: Sequence[dict] = (), writer: MetricWriter | None = None,
               hooks: Sequence[Hook] = (), prior_wall_time_s: float = 0.0,
               data_seed: int | None = None) -> tuple[TrainState, list[dict]]:
  """Trains `state` to `end_step`, evaluating, running hooks and checkpointing on the way.

  Blocks end at every multiple of `eval_every` and `checkpoint_every`, at
  every kept checkpoint step, at every hook's next step and at `end_step`.
  At a block's end, first the hooks due there run (each may replace the
  state), then at evaluation steps a record {step, train_loss,
  train_accuracy, val_*, test_*} goes to the history, and the same record
  plus the learning rate and the global and per-layer density
  ("density/<layer>") to `writer`; then the checkpoint (state + history) is
  saved at multiples of `checkpoint_every`, at kept steps and at the end.

  With the setup's `on_nan == "stop"`, a block whose mean loss is not finite
  raises `Diverged` before anything of that step is saved.

  Args:
    trainer: compiled functions and data.
    state: the state to continue from (any step <= end_step).
    checkpointer: where checkpoints go (None: no checkpoints).
    end_step: the global step to stop at.
    history: records so far (from a resumed checkpoint).
    writer: receives every evaluation record (e.g. a `ProgressWriter`).
    hooks: run between blocks at the steps they name.
    prior_wall_time_s: wall time spent before a resume; checkpoints store
      the running total as "wall_time_s".
    data_seed: seed of the data order (default: the experiment's seed).

  Returns:
    (final state, history).
  """
  exp = trainer.experiment
  recorder = HistoryWriter(history)
  state = trainer.place(state)
  step = int(state.step)
  keep = set(checkpointer.keep) if checkpointer is not None else set()
  started = time.perf_counter()

  def payload():
    return {"history": recorder.history,
            "wall_time_s": prior_wall_time_s + time.perf_counter() - started}

  if checkpointer is not None and step in keep and step not in checkpointer.steps():
    checkpointer.save(step, state, payload())
  boundaries = sorted(keep | {end_step})
  while step < end_step:
    target, due = next_block_end(exp, step, end_step, boundaries, hooks)
    state, metrics = trainer.run_block(state, target - step, data_seed)
    step = target
    if exp.on_nan == "stop" and not math.isfinite(metrics["loss"]):
      # Before this step's checkpoint: every checkpoint on disk is finite.
      directory = os.path.dirname(checkpointer.directory) if checkpointer else "(no directory)"
      raise Diverged(step, directory, checkpointer.latest_step() if checkpointer else None)
    state = run_due_hooks(trainer, hooks, due, step, state)
    if step % exp.eval_every == 0 or step == end_step:
      record = {"train_loss": metrics["loss"], "train_accuracy": metrics["accuracy"]}
      for split in ("val", "test"):
        record.update({f"{split}_{k}": v for k, v in trainer.evaluate(state, split).items()})
      recorder.write_scalars(step, record)
      if writer is not None:
        writer.write_scalars(step, {**record, **mask_and_lr_scalars(exp, state)})
    if checkpointer is not None and (step % exp.checkpoint_every == 0 or step in boundaries):
      checkpointer.save(step, state, payload())
  if writer is not None:
    writer.flush()
  return state, recorder.history


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


def mask_and_lr_scalars(exp, state: TrainState) -> dict[str, float]:
  """What the writer gets beyond the history: the LR, global and per-layer density, and for
  masks that change during training the number of updates so far and the fraction of
  positions the latest one flipped."""
  rows = masks_lib.layer_report(state.masks, exp.prunable)  # one host transfer of the masks
  alive, total = sum(r["surviving"] for r in rows), sum(r["total"] for r in rows)
  return {"learning_rate": float(exp.schedule(state.step)), "density": alive / total,
          **{f"density/{r['name']}": r["density"] for r in rows},
          **latest_update_scalars(state.mask_state, total)}


def summarize(trainer: Trainer, state: TrainState, history: list[dict]) -> dict:
  """Final and early-stopping metrics, density and per-layer density."""
  return summary_of(trainer.experiment, state, history, trainer.evaluate(state, "test"))


def summary_of(exp, state: TrainState, history: list[dict], test: dict[str, float]) -> dict:
  """`summarize` given the final test metrics `test` of `state`."""
  return {
      "final_test_accuracy": test["accuracy"],
      "final_test_loss": test["loss"],
      **early_stopping(history),
      "density": masks_lib.density(state.masks, exp.prunable),
      "layer_densities": masks_lib.layer_densities(state.masks, exp.prunable),
      "steps": int(state.step),
  }


def train_run(trainer: Trainer, directory: str, initial_state: TrainState,
              end_step: int | None = None, keep: tuple[int, ...] = (), label: str = "",
              hooks: Sequence[Hook] = (), writer: MetricWriter | None = None,
              data_seed: int | None = None) -> tuple[TrainState, dict]:
  """Trains from `initial_state` with checkpoints in `directory`, resuming if any.

  If `directory` holds checkpoints, training restarts from the latest one
  (whose structure must match `initial_state`), so a killed run re-run with
  the same arguments ends with the same params as an uninterrupted one.

  Args:
    trainer: compiled functions and data.
    directory: the run's directory (checkpoints in `directory/checkpoints`).
    initial_state: where training starts (its step may be > 0: a rewind).
    end_step: the global step to stop at (default: the setup's total steps).
    keep: steps whose checkpoints are kept (rewind points); the end always is.
    label: names the run in progress lines.
    hooks: passed to `train_loop`.
    writer: receives every evaluation record; default (`default_writer`):
      progress on stdout as `train.verbose` says and TensorBoard events in
      `directory` when `train.tensorboard` is on.
    data_seed: seed of the data order (default: the experiment's seed).

  Returns:
    (final state, summary dict incl. "history" and "wall_time_s").
  """
  exp = trainer.experiment
  end_step = exp.total_steps if end_step is None else end_step
  checkpointer = Checkpointer(os.path.join(directory, "checkpoints"),
                              keep=set(keep) | {end_step})
  state, history, prior = initial_state, [], 0.0
  restored = checkpointer.restore_latest(initial_state, min_step=int(initial_state.step))
  if restored is not None:
    latest, state, payload = restored
    history, prior = payload.get("history", []), float(payload.get("wall_time_s", 0.0))
    if exp.verbose and latest < end_step:
      note(f"{label + ' | ' if label else ''}resuming from step {latest}")
  owned = writer is None
  if owned:
    writer = default_writer(exp, directory, end_step, int(state.step), label)
  started = time.perf_counter()
  try:
    state, history = train_loop(trainer, state, checkpointer, end_step, history, writer=writer,
                                hooks=hooks, prior_wall_time_s=prior, data_seed=data_seed)
  finally:
    if owned and writer is not None:
      writer.close()
  checkpointer.close()
  summary = summarize(trainer, state, history)
  summary.update(history=history, wall_time_s=prior + time.perf_counter() - started)
  return state, summary


def default_writer(exp, directory: str, end_step: int, start_step: int,
                   label: str = "") -> MultiWriter | None:
  """Progress on stdout (`exp.verbose`: 0 none, 1 bar or heartbeat, 2 every evaluation)
  and, with `exp.tensorboard`, TensorBoard event files in `directory`; None if neither."""
  writers: list[MetricWriter] = []
  mode = progress_mode(exp.verbose)
  if mode is not None:
    progress = ProgressWriter(end_step, label, mode)
    progress.start(start_step)
    writers.append(progress)
  if exp.tensorboard:
    writers.append(TensorBoardWriter(directory, start_step))
  return MultiWriter(writers) if writers else None


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
