"""Metric writers: one interface for everything a run reports while it trains.

The train loop hands every evaluation record to one `MetricWriter`
(`write_scalars(step, scalars)`); the JSON history kept in checkpoints and
results, progress on stdout (a bar, heartbeat lines, or a line per
evaluation) and TensorBoard event files are writers. Only the main process
prints or writes files.
"""
from __future__ import annotations

import sys
import time
from typing import Mapping, Protocol, Sequence, TextIO

from lotto.runtime import files
from lotto.runtime.devices import is_main_process

Scalars = Mapping[str, float]


class MetricWriter(Protocol):
  """Receives scalar metrics keyed by the global step."""

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    """Records `scalars` (name -> value) measured at global step `step`."""

  def flush(self) -> None:
    """Makes everything written so far durable or visible."""

  def close(self) -> None:
    """Flushes and releases what the writer holds (files, a drawn bar)."""


class HistoryWriter:
  """Keeps every record as {"step": step, **scalars}: the run's JSON history.

  Attributes:
    history: the records so far (a resumed run starts from its checkpoint's).
  """

  def __init__(self, history: Sequence[dict] = ()):
    self.history = list(history)

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    self.history.append({"step": int(step), **scalars})

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


PROGRESS_MODES = ("bar", "heartbeat", "lines")


class ProgressWriter:
  """Progress of one training run on stdout, in one of three modes.

  - "bar" (a terminal, `train.verbose=1`): one line redrawn in place at every
    evaluation (steps, steps/s, train loss, test accuracy, ETA), erased by
    `close()` so the job's one-line summary takes its place.
  - "heartbeat" (not a terminal, `train.verbose=1`): the evaluation line at
    most every `heartbeat_s` seconds, so CI logs show long runs are alive and
    short runs print nothing.
  - "lines" (`train.verbose=2`): a line at every evaluation.

  Args:
    end_step: the step the run ends at.
    label: a prefix naming the run ("level 3/10", "snip").
    mode: one of PROGRESS_MODES, or "auto": "bar" on a terminal, else "heartbeat".
    heartbeat_s: the least time between two heartbeat lines.
    stream: where to write (default: sys.stdout at each write).
  """

  def __init__(self, end_step: int, label: str = "", mode: str = "auto",
               heartbeat_s: float = 30.0, stream: TextIO | None = None):
    self._stream = stream
    if mode == "auto":
      mode = "bar" if self.stream.isatty() else "heartbeat"
    if mode not in PROGRESS_MODES:
      raise ValueError(f"unknown progress mode {mode!r}; valid: {', '.join(PROGRESS_MODES)}")
    self.mode, self.end_step, self.label, self.heartbeat_s = mode, end_step, label, heartbeat_s
    self.start(0)

  @property
  def stream(self) -> TextIO:
    return self._stream if self._stream is not None else sys.stdout

  def start(self, step: int) -> None:
    """Marks where the run (re)starts: steps/s and ETA count from here."""
    now = time.perf_counter()
    self._first_time, self._first_step = now, step
    self._last_time, self._last_step = now, step
    self._last_line_time, self._drawn = now, 0

  def _line(self, step: int, scalars: Scalars, rate: float | None) -> str:
    text = f"{self.label + ' | ' if self.label else ''}step {step}/{self.end_step}"
    if rate:
      text += f" | {rate:,.0f} steps/s"
    if "train_loss" in scalars:
      text += (f" | train loss {scalars['train_loss']:.3f} "
               f"acc {scalars.get('train_accuracy', float('nan')):.1%}")
    if "val_loss" in scalars:
      text += f" | val loss {scalars['val_loss']:.3f}"
    if "test_accuracy" in scalars:
      text += f" | test acc {scalars['test_accuracy']:.1%}"
    return text

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    if not is_main_process():
      return
    now = time.perf_counter()
    steps = step - self._last_step
    rate = steps / max(now - self._last_time, 1e-9) if steps > 0 else None
    self._last_time, self._last_step = now, step
    if self.mode == "lines":
      print(self._line(step, scalars, rate), file=self.stream, flush=True)
    elif self.mode == "heartbeat":
      if now - self._last_line_time >= self.heartbeat_s:
        self._last_line_time = now
        print(self._line(step, scalars, rate), file=self.stream, flush=True)
    else:
      self._draw(step, scalars, now)

  def _draw(self, step: int, scalars: Scalars, now: float) -> None:
    done = (step - self._first_step) / max(self.end_step - self._first_step, 1)
    filled = int(round(20 * min(max(done, 0.0), 1.0)))
    elapsed = now - self._first_time
    rate = (step - self._first_step) / max(elapsed, 1e-9)
    eta = (self.end_step - step) / rate if rate > 0 else float("nan")
    text = (f"{self.label + ' ' if self.label else ''}[{'#' * filled}{'.' * (20 - filled)}] "
            f"{step}/{self.end_step} | {rate:,.0f} steps/s")
    if "train_loss" in scalars:
      text += f" | loss {scalars['train_loss']:.3f}"
    if "test_accuracy" in scalars:
      text += f" | test {scalars['test_accuracy']:.1%}"
    text += f" | ETA {format_seconds(eta)}"
    padding = max(self._drawn - len(text), 0)
    self.stream.write("\r" + text + " " * padding)
    self.stream.flush()
    self._drawn = len(text)

  def flush(self) -> None:
    self.stream.flush()

  def close(self) -> None:
    """Erases a drawn bar (the job prints its summary line in its place)."""
    if self.mode == "bar" and self._drawn and is_main_process():
      self.stream.write("\r" + " " * self._drawn + "\r")
      self.stream.flush()
      self._drawn = 0


def format_seconds(seconds: float) -> str:
  """"42 s", "3 min 05 s", "1 h 02 min"; "?" when unknown."""
  if not seconds == seconds or seconds == float("inf"):  # NaN or inf
    return "?"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  if seconds < 3600:
    return f"{seconds // 60} min {seconds % 60:02d} s"
  return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_mode(verbose: int) -> str | None:
  """The progress mode of `train.verbose`: 0 none, 1 bar or heartbeat, 2 every evaluation."""
  return {0: None, 1: "auto"}.get(int(verbose), "lines")


class MultiWriter:
  """Forwards every call to each of `writers`, in order."""

  def __init__(self, writers: Sequence[MetricWriter]):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    for writer in self.writers:
      writer.write_scalars(step, scalars)

  def flush(self) -> None:
    for writer in self.writers:
      writer.flush()

  def close(self) -> None:
    for writer in self.writers:
      writer.close()


def tensorboard_tag(name: str) -> str:
  """History keys as TensorBoard tags: "train_loss" -> "train/loss"; others unchanged."""
  for split in ("train", "val", "test"):
    if name.startswith(split + "_"):
      return f"{split}/{name[len(split) + 1:]}"
  return name


class TensorBoardWriter:
  """Scalars as TensorBoard event files in `logdir`, with no TensorFlow.

  Uses the `tensorboard` package's own event-file writer and protobufs. A
  (re)started run first writes a SessionLog START at its first step, so
  TensorBoard drops the events an interrupted attempt wrote past that step
  (a resumed run shows one clean curve). Only the main process writes.

  Args:
    logdir: the run's directory (TensorBoard names the run by it).
    start_step: the step this attempt starts at.
  """

  def __init__(self, logdir: str, start_step: int = 0):
    self._writer = None
    if not is_main_process():
      return
    # Imported here: only runs that write events pay for the protobuf modules.
    from tensorboard.compat.proto import event_pb2  # pylint: disable=import-outside-toplevel
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=import-outside-toplevel
    from tensorboard.summary.writer.event_file_writer import (  # pylint: disable=import-outside-toplevel
        EventFileWriter)
    self._event, self._summary = event_pb2, summary_pb2
    files.makedirs(logdir)
    self._writer = EventFileWriter(logdir, flush_secs=30)
    # TensorBoard purges the steps >= a START event's step: the attempt's first
    # possible step is start_step + 1 (start_step itself was logged before the
    # checkpoint this attempt resumes from).
    start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
    self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=int(start_step) + 1,
                                           session_log=start))

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    if self._writer is None:
      return
    values = [self._summary.Summary.Value(tag=tensorboard_tag(name), simple_value=float(value))
              for name, value in scalars.items() if value is not None]
    self._writer.add_event(self._event.Event(wall_time=time.time(), step=int(step),
                                             summary=self._summary.Summary(value=values)))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None
