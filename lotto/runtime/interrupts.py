"""Stopping a job cleanly on SIGTERM or SIGINT (what schedulers send before they kill it).

`stop_on_signals()` (the `lotto` command wraps every job in it) turns the
first SIGTERM or SIGINT into a request; the train loop honours it at its next
safe point, a block boundary: it finishes any checkpoint being written, saves
the replicas' state at that step, and raises `Interrupted`. The job's locks
are released on the way out and the command prints one line and exits with
the shell's code for the signal (128 + its number: 143 for SIGTERM, 130 for
SIGINT). Re-running the same command resumes from that checkpoint with the
same numbers as an uninterrupted run. A second signal is not deferred: it
acts as it would without lotto.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator

_requested: int | None = None


class Interrupted(Exception):
  """Training stopped at a safe point because a signal asked it to.

  Attributes:
    signum: the signal's number.
    step: the step the state was saved at.
    exit_code: 128 + signum, as a shell reports a process the signal ended.
  """

  def __init__(self, signum: int, step: int, directory: str):
    self.signum, self.step, self.exit_code = signum, step, 128 + signum
    name = signal.Signals(signum).name
    super().__init__(f"stopped by {name} at step {step} (its checkpoint is saved in "
                     f"{directory}); re-run the same command to resume")


def requested() -> int | None:
  """The signal a stop was requested by, or None."""
  return _requested


def request(signum: int) -> None:
  """Asks the running job to stop at its next safe point (what the handler does)."""
  global _requested  # pylint: disable=global-statement
  _requested = signum


def clear() -> None:
  """Forgets a request (the next job starts afresh)."""
  global _requested  # pylint: disable=global-statement
  _requested = None


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
  """Within the block, the first of `signums` requests a stop; a second one acts at once.

  Must be entered on the main thread (Python delivers signals there).
  """
  previous = {signum: signal.getsignal(signum) for signum in signums}

  def handle(signum, frame):
    del frame
    if _requested is not None:  # a second signal: what it would have done without lotto
      signal.signal(signum, previous[signum])
      signal.raise_signal(signum)
      return
    request(signum)

  for signum in signums:
    signal.signal(signum, handle)
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    clear()
