"""What a failed checkpoint write leaves: one line for the user, the libraries' story in a log.

A write that fails (disk full, read-only) fails in several of orbax's writer
threads at once, and orbax, tensorstore and asyncio each report it with
tracebacks from their threads. `HeldLibraryOutput` holds all of that back
while a checkpoint is written (replayed after a successful write);
`storage_error` turns a failure into lotto's one-line `StorageError` and
writes the held output to `ERROR_LOG` beside the checkpoints directory.
"""
from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import re
import sys
import threading
import time
import traceback
import warnings

from lotto.core.errors import StorageError
from lotto.runtime import files
from lotto.runtime.runs import free_space

ERROR_LOG = "checkpoint_errors.log"  # beside the checkpoints directory: the last failed write

# How long a failed write may take to stop: orbax's writer threads end (their other writes fail
# or finish), then tensorstore's callbacks into their closed event loops run.
_SETTLE_SECONDS = 30.0
_QUIET_SECONDS = 0.3


class WriteFailure:
  """What a failed write raised, as text (no reference to the error or its frames)."""

  def __init__(self, error: BaseException):
    self.code = os_error_code(error)  # the errno behind it, if any
    self.summary = " ".join(str(error).split())[:200]
    self.traceback = "".join(traceback.format_exception(error))


def os_error_code(error: BaseException) -> int | None:
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


class HeldLibraryOutput:
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

  def __enter__(self) -> "HeldLibraryOutput":
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

  def __init__(self, output: HeldLibraryOutput):
    super().__init__(logging.NOTSET)
    self._output = output

  def emit(self, record: logging.LogRecord) -> None:
    self._output.add(record)


def storage_error(directory: str, step: int, latest_step: int | None, failure: WriteFailure,
                  library: HeldLibraryOutput, seconds: float) -> StorageError:
  """The one line for a failed write of checkpoint `step` into `directory`; the full story
  goes to `ERROR_LOG` beside the checkpoints directory (if it can be written).

  Args:
    directory: the checkpoints directory.
    step: the step whose write failed.
    latest_step: the newest complete checkpoint (None: none yet).
    failure: what the write raised.
    library: what the libraries printed meanwhile.
    seconds: how long the write took to fail.
  """
  code = failure.code
  reason = os.strerror(code) if code else failure.summary
  if code in (errno.EROFS, errno.EACCES, errno.EPERM):
    advice = f"make {directory} writable"
  else:
    advice = "free space"
  resume = (f"to resume from step {latest_step}" if latest_step is not None else
            "(no checkpoint was complete yet: it starts again)")
  log = _write_error_log(directory, step, failure, library, seconds)
  return StorageError(
      f"cannot write checkpoint {directory}/{step}: {reason} "
      f"({free_space(directory)}); {advice} and re-run the same command {resume}"
      + (f"; the full library traceback is in {log}" if log else ""))


def _write_error_log(directory: str, step: int, failure: WriteFailure,
                     library: HeldLibraryOutput, seconds: float) -> str | None:
  """Writes what orbax raised and what the libraries printed to `ERROR_LOG` (replacing an
  older one), as much of it as fits: its path, or None if not even its start fits."""
  path = os.path.join(os.path.dirname(directory), ERROR_LOG)
  parts = [f"lotto could not write checkpoint {directory}/{step} "
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
