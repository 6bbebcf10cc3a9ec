"""Checkpoints of TrainStates (the only module that imports orbax).

A `Checkpointer` owns one directory of numbered step checkpoints. Each holds
the state pytree and a JSON payload (the metrics history so far), written
synchronously (the next train block donates the state's buffers, so an async
save must not read them later). `ReplicaCheckpoints` keeps the checkpoints of
K >= 1 replicas trained together in step: each replica's in its own
directory, stale resume points dropped only once every replica saved the new
step, so a kill between two replicas' saves always leaves a step every
replica holds.

A write that fails (disk full, read-only) raises `StorageError`, one line; what
orbax, tensorstore and asyncio report about the failure meanwhile (tracebacks
from their threads) is held back from the terminal and written to
`write_failures.ERROR_LOG` beside the checkpoints directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
import time
from typing import Any, Iterable, Sequence

import jax
import orbax.checkpoint as ocp

from lotto.core.errors import ConfigError
from lotto.core.types import PyTree
from lotto.runtime import files
from lotto.runtime.devices import is_main_process, note
from lotto.runtime.write_failures import HeldLibraryOutput, WriteFailure, storage_error


class Checkpointer:
  """Numbered checkpoints of one training run.

  Steps named in `keep` are kept forever (the rewind point, the end); any
  other step is a resume point and is deleted once a newer checkpoint exists.
  """

  def __init__(self, directory: str, keep: Iterable[int] = ()):
    self.directory = files.absolute(directory)
    self.keep = set(int(s) for s in keep)
    _remove_unfinished_saves(self.directory)
    self._manager = self._open()

  def _open(self) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    """The steps that have a complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: PyTree, payload: dict[str, Any] | None = None,
           drop_stale: bool = True) -> None:
    """Saves `state` and a JSON `payload` at `step`; prunes stale resume points
    (unless `drop_stale` is False: a population drops them once every replica saved).

    Raises:
      StorageError: the write failed (disk full, read-only); the half-written
        step is removed and every complete checkpoint stays usable.
    """
    step = int(step)
    if step in self._manager.all_steps():
      return
    started = time.monotonic()
    threads_before = set(threading.enumerate())
    with HeldLibraryOutput() as library:
      try:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), payload=ocp.args.JsonSave(payload or {})))
        self._manager.wait_until_finished()
        if is_main_process() and not files.is_dir(os.path.join(self.directory, str(step))):
          # orbax logs a writer thread's failure and skips the step's finalization, without
          # raising: the step is not there.
          raise RuntimeError(f"orbax did not finish writing step {step}") from (
              library.first_error())
      except Exception as error:  # pylint: disable=broad-except  # orbax wraps OSError variously
        # Kept as text: the error's frames hold orbax's failed asyncio tasks, which asyncio
        # reports when they are collected (at exit, on the terminal, if still referenced).
        failure = WriteFailure(error)
      else:
        failure = None
      if failure is not None:
        library.keep_as_text()
        library.wait_for_threads(threads_before)
        self._reopen()
        library.wait_until_quiet()
        _remove_unfinished_saves(self.directory, step, quiet=True)
    if failure is None:
      library.replay()
    else:
      raise storage_error(self.directory, step, self.latest_step(), failure, library,
                          time.monotonic() - started)
    if drop_stale:
      self.drop_stale(step)

  def _reopen(self) -> None:
    """Replaces the manager after a failed write: the new one knows only the complete
    steps on disk, and the old one's record of the failed write (asyncio tasks whose errors
    asyncio reports when they are collected, at exit otherwise) can be collected now."""
    with contextlib.suppress(Exception):
      self._manager.close()
    try:
      self._manager = self._open()
    except Exception:  # pylint: disable=broad-except  # keep the old one, told what is on disk
      with contextlib.suppress(Exception):
        self._manager.reload()


  def drop_stale(self, step: int) -> None:
    """Deletes the resume points before `step` (kept steps stay)."""
    for old in self._manager.all_steps():
      if old < step and old not in self.keep:
        self._manager.delete(old)

  def delete(self, step: int) -> None:
    """Deletes the checkpoint at `step` (a damaged one)."""
    self._manager.delete(step)

  def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Restores (state, payload) at `step` into the structure of `target`.

    A checkpoint written before a dataclass state gained a field that holds
    no arrays (TrainState.mask_state, empty for static masks) restores into
    the other fields, the new one kept as in `target`.
    """
    try:
      return self._restore(step, target)
    except ValueError:
      if not dataclasses.is_dataclass(target):
        raise
      empty = [f.name for f in dataclasses.fields(target)
               if not jax.tree.leaves(getattr(target, f.name))]
      # Newer fields come last: try leaving out the fewest, newest ones first.
      for size in range(1, len(empty) + 1):
        for left_out in itertools.combinations(reversed(empty), size):
          rest = {f.name: getattr(target, f.name) for f in dataclasses.fields(target)
                  if f.name not in left_out}
          try:
            restored, payload = self._restore(step, rest)
          except ValueError:
            continue
          return target.replace(**restored), payload
      raise

  def _restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), payload=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["payload"] or {})

  def restore_latest(self, target: PyTree, min_step: int = 0
                     ) -> tuple[int, PyTree, dict[str, Any]] | None:
    """The newest checkpoint at or after `min_step` that restores: (step, state, payload).

    A damaged one (truncated or garbled files: orbax or tensorstore raise) is
    reported, deleted so the run can write that step again, and the next
    older one is tried; None if none is left (the caller starts over, which
    gives the same numbers: training is deterministic).
    """
    for step in reversed([s for s in self.steps() if s >= min_step]):
      try:
        state, payload = self.restore(step, target)
      except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many
        note(f"damaged checkpoint {self.directory}/{step} ({type(error).__name__}): deleted; "
             "resuming from the one before")
        self._manager.delete(step)
        continue
      return step, state, payload
    return None

  def close(self) -> None:
    self._manager.close()


class ReplicaCheckpoints:
  """One `Checkpointer` per replica directory (`<directory>/checkpoints`), saved and
  restored in step."""

  def __init__(self, directories: Sequence[str], keep: set[int]):
    self.checkpointers = [Checkpointer(os.path.join(d, "checkpoints"), keep=keep)
                          for d in directories]

  def save(self, step: int, states: Sequence[PyTree], payloads: Sequence[dict]) -> None:
    """Saves replica i's state and payload at `step`, then drops stale resume points."""
    for checkpointer, state, payload in zip(self.checkpointers, states, payloads):
      checkpointer.save(step, state, payload, drop_stale=False)
    for checkpointer in self.checkpointers:  # only now: every replica holds `step`
      checkpointer.drop_stale(step)

  def restore_latest(self, targets: Sequence[PyTree], min_step: int
                     ) -> tuple[int, list[PyTree], list[dict]] | None:
    """The newest step >= `min_step` every replica holds and restores, or None.

    A damaged checkpoint is reported and deleted, and the next older common
    step is tried (training is deterministic, so starting earlier gives the
    same numbers).
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


_UNFINISHED = ".orbax-checkpoint-tmp"

def _remove_unfinished_saves(directory: str, step: int | None = None,
                             quiet: bool = False) -> None:
  """Deletes what an interrupted save left (orbax's temporary step directories);
  process 0 only, like every write. `quiet`: no note (the caller reports the failure)."""
  if not is_main_process() or not files.is_dir(directory):
    return
  for name in files.listdir(directory):
    if _UNFINISHED in name and (step is None or name.split(".")[0] == str(step)):
      if not quiet:
        note(f"removing an unfinished checkpoint write {os.path.join(directory, name)}")
      with contextlib.suppress(OSError):
        files.rmtree(os.path.join(directory, name))


def read_saved_state(directory: str, step: int | None = None) -> tuple[int, dict[str, Any]]:
  """A checkpointed state as it was written, without a target to restore into: nested
  dicts of arrays keyed by the state's field names ("params", "masks", ...). For
  reading a finished run's arrays (`lotto.jobs.export`); writes nothing.

  Args:
    directory: a `Checkpointer`'s directory (a run's `checkpoints/`).
    step: the step to read; None reads the newest.

  Returns:
    (step, the state's fields).

  Raises:
    ConfigError: no checkpoint there (or none at `step`), or a damaged one.
  """
  if not files.is_dir(directory):
    raise ConfigError(f"no checkpoints in {directory}")
  options = ocp.CheckpointManagerOptions(create=False, enable_async_checkpointing=False)
  manager = ocp.CheckpointManager(files.absolute(directory), options=options)
  try:
    steps = sorted(manager.all_steps())
    if not steps or (step is not None and step not in steps):
      raise ConfigError(f"no checkpoint{'' if step is None else f' at step {step}'} in "
                        f"{directory} (found {steps})")
    step = steps[-1] if step is None else int(step)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore()))
    except Exception as error:  # pylint: disable=broad-except  # orbax/tensorstore raise many
      raise ConfigError(f"the checkpoint at step {step} in {directory} is damaged "
                        f"({type(error).__name__})") from None
  finally:
    manager.close()
  return step, dict(restored["state"])
