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
from their threads) is held back from the terminal and written to `ERROR_LOG`
beside the checkpoints directory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import itertools
import logging
import os
import re
import sys
import threading
import time
import traceback
import warnings
from typing import Any, Iterable, Sequence

import jax
import orbax.checkpoint as ocp

from lotto.core.errors import ConfigError, StorageError
from lotto.core.types import PyTree
from lotto.runtime import files
from lotto.runtime.devices import is_main_process, note
from lotto.runtime.runs import free_space


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
    with _LibraryOutput() as library:
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
        failure = _Failure(error)
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
      raise self._storage_error(step, failure, library, time.monotonic() - started)
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

  def _storage_error(self, step: int, failure: "_Failure", library: "_LibraryOutput",
                     seconds: float) -> StorageError:
    """The one line for a failed write; the full story goes to `ERROR_LOG` beside the
    checkpoints directory (if it can be written)."""
    code = failure.code
    reason = os.strerror(code) if code else failure.summary
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
      advice = f"make {self.directory} writable"
    else:
      advice = "free space"
    latest = self.latest_step()
    resume = (f"to resume from step {latest}" if latest is not None else
              "(no checkpoint was complete yet: it starts again)")
    log = self._write_error_log(step, failure, library, seconds)
    return StorageError(
        f"cannot write checkpoint {self.directory}/{step}: {reason} "
        f"({free_space(self.directory)}); {advice} and re-run the same command {resume}"
        + (f"; the full library traceback is in {log}" if log else ""))

  def _write_error_log(self, step: int, failure: "_Failure", library: "_LibraryOutput",
                       seconds: float) -> str | None:
    """Writes what orbax raised and what the libraries printed to `ERROR_LOG` (replacing an
    older one), as much of it as fits: its path, or None if not even its start fits."""
    path = os.path.join(os.path.dirname(self.directory), ERROR_LOG)
    parts = [f"lotto could not write checkpoint {self.directory}/{step} "
             f"({time.strftime('%Y-%m-%d %H:%M:%S')}, after {seconds:.1f} s); the "
             "half-written step was removed and the complete ones kept.\n\n"
             "The error orbax raised:\n" + failure.traceback,
             f"\nWhat the libraries printed while writing it ({len(library.entries)} messages, "
             "held back from the terminal):\n"]
    parts += [f"\n{entry}" for entry in library.texts()]
    written = 0
    try:
      with files.open_file(path, "w") as handle:
        for part in parts:
          handle.write(part)
          handle.flush()
          written += 1
    except Exception:  # pylint: disable=broad-except  # the same full disk, most likely
      if not written:
        with contextlib.suppress(Exception):
          files.remove(path)
        return None
    return path

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

ERROR_LOG = "checkpoint_errors.log"  # beside the checkpoints directory: the last failed write

# How long a failed write may take to stop: orbax's writer threads end (their other writes fail
# or finish), then tensorstore's callbacks into their closed event loops run.
_SETTLE_SECONDS = 30.0
_QUIET_SECONDS = 0.3


class _Failure:
  """What a failed write raised, as text (no reference to the error or its frames)."""

  def __init__(self, error: BaseException):
    self.code = _os_error_code(error)  # the errno behind it, if any
    self.summary = " ".join(str(error).split())[:200]
    self.traceback = "".join(traceback.format_exception(error))


def _os_error_code(error: BaseException) -> int | None:
  """The errno behind a failed write: an OSError in the chain of `error`, or the
  "[os_error_code='28']" tensorstore puts in its messages; None if neither."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      return error.errno
    match = re.search(r"os_error_code='?(\d+)", str(error))
    if match:
      return int(match.group(1))
    error = error.__cause__ or error.__context__
  return None


class _LibraryOutput:
  """Holds back what orbax, tensorstore and asyncio print while a checkpoint is written.

  A write that fails (disk full, read-only) fails in several of orbax's writer threads at
  once, and each reports it: absl log records with tracebacks (orbax's futures), "Future
  exception was never retrieved" (asyncio), and "Event loop is closed" tracebacks that
  tensorstore's own threads print through sys.excepthook when a write completes after its
  orbax thread gave up. Inside the block every log record (lotto itself logs nothing; it
  prints) and every exception reported from a thread other than the main one is kept here
  instead. After a successful write they are replayed as they would have been printed;
  after a failed one they go to the error log and the terminal gets lotto's one line.
  """

  def __init__(self):
    self.entries: list[logging.LogRecord | warnings.WarningMessage | str] = []
    self._lock = threading.Lock()
    self._as_text = False
    self._handler = _HoldingHandler(self)

  def __enter__(self) -> "_LibraryOutput":
    root = logging.getLogger()
    self._root_handlers = list(root.handlers)
    self._hooks = (sys.excepthook, threading.excepthook, sys.unraisablehook,
                   warnings.showwarning)
    root.handlers = [self._handler]
    sys.excepthook = self._excepthook
    threading.excepthook = self._thread_excepthook
    sys.unraisablehook = self._unraisablehook
    warnings.showwarning = self._showwarning
    return self

  def __exit__(self, kind, value, trace) -> None:
    logging.getLogger().handlers = self._root_handlers
    sys.excepthook, threading.excepthook, sys.unraisablehook, warnings.showwarning = self._hooks
    if kind is not None:  # not orbax's failure (an interrupt, a bug): lose nothing
      self.replay()

  def add(self, entry: logging.LogRecord | warnings.WarningMessage | str) -> None:
    with self._lock:
      self.entries.append(_format(entry) if self._as_text else entry)

  def first_error(self) -> BaseException | None:
    """The exception of the first log record that carries one (orbax logs its writer
    threads' failures with their tracebacks)."""
    with self._lock:
      for entry in self.entries:
        if isinstance(entry, logging.LogRecord) and entry.exc_info and entry.exc_info[1]:
          return entry.exc_info[1]
    return None

  def keep_as_text(self) -> None:
    """From now on keeps what is reported as text (after a failed write: a log record's
    traceback would keep orbax's failed tasks alive)."""
    with self._lock:
      self._as_text = True
      self.entries = [_format(entry) for entry in self.entries]

  def _showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
    # asyncio: "coroutine ... was never awaited" for the failed write's pending writes
    self.add(warnings.WarningMessage(message, category, filename, lineno, file, line))

  def _excepthook(self, kind, value, trace) -> None:
    if threading.current_thread() is threading.main_thread():
      self._hooks[0](kind, value, trace)
    else:  # tensorstore's threads (PyErr_Print)
      self.add("".join(traceback.format_exception(kind, value, trace)))

  def _thread_excepthook(self, args) -> None:
    self.add(f"Exception in thread {getattr(args.thread, 'name', '?')}:\n" + "".join(
        traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)))

  def _unraisablehook(self, unraisable) -> None:
    if threading.current_thread() is threading.main_thread():
      self._hooks[2](unraisable)
    else:
      self.add(f"{unraisable.err_msg or 'Exception ignored in'}: {unraisable.object!r}\n"
               + "".join(traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                                    unraisable.exc_traceback)))

  def wait_for_threads(self, threads_before: set[threading.Thread]) -> None:
    """Waits (up to `_SETTLE_SECONDS`) for the threads started since `threads_before` (orbax's
    writers: when one fails the others go on until their own writes fail or finish)."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    for thread in threading.enumerate():
      if thread not in threads_before and thread is not threading.current_thread():
        # orbax's threads re-raise their error once joined; tensorstore's (C++) threads
        # cannot be joined (AssertionError).
        with contextlib.suppress(Exception):
          thread.join(max(0.0, deadline - time.monotonic()))

  def wait_until_quiet(self) -> None:
    """Waits (up to `_SETTLE_SECONDS`) until nothing more was reported for `_QUIET_SECONDS`:
    tensorstore's writes still in flight, and failed asyncio tasks once collected."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    while time.monotonic() < deadline:
      count = len(self.entries)
      gc.collect()  # asyncio reports a failed task nobody awaited when it is collected
      time.sleep(_QUIET_SECONDS)
      if len(self.entries) == count:
        return

  def replay(self) -> None:
    """Prints what was held back as it would have been printed (after a successful write)."""
    for entry in self.entries:
      if isinstance(entry, logging.LogRecord):
        logging.getLogger(entry.name).handle(entry)
      elif isinstance(entry, warnings.WarningMessage):
        warnings.showwarning(entry.message, entry.category, entry.filename, entry.lineno,
                             entry.file, entry.line)
      else:
        sys.stderr.write(entry)

  def texts(self) -> list[str]:
    """The entries as they would have been printed."""
    with self._lock:
      return [_format(entry) for entry in self.entries]


_FORMATTER = logging.Formatter("%(levelname)s %(asctime)s %(threadName)s "
                               "%(pathname)s:%(lineno)d] %(message)s")


def _format(entry: logging.LogRecord | warnings.WarningMessage | str) -> str:
  if isinstance(entry, logging.LogRecord):
    return _FORMATTER.format(entry) + "\n"
  if isinstance(entry, warnings.WarningMessage):
    return warnings.formatwarning(entry.message, entry.category, entry.filename, entry.lineno,
                                  entry.line)
  return entry


class _HoldingHandler(logging.Handler):

  def __init__(self, output: _LibraryOutput):
    super().__init__(logging.NOTSET)
    self._output = output

  def emit(self, record: logging.LogRecord) -> None:
    self._output.add(record)


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
