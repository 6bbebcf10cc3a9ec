"""Metric writers: one interface for everything a run reports while it trains.

The train loop hands every evaluation record to one `MetricWriter`
(`write_scalars(step, scalars)`); the JSON history kept in checkpoints and
results, progress lines on stdout, and (later) TensorBoard event files are
writers. Only the main process prints (`devices.note`).
"""
from __future__ import annotations

import time
from typing import Mapping, Protocol, Sequence

from lotto.runtime.devices import note

Scalars = Mapping[str, float]


class MetricWriter(Protocol):
  """Receives scalar metrics keyed by the global step."""

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    """Records `scalars` (name -> value) measured at global step `step`."""

  def flush(self) -> None:
    """Makes everything written so far durable or visible."""


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


class ProgressWriter:
  """One progress line per evaluation: step, steps/s, train loss/acc, val loss, test acc.

  Args:
    end_step: the step the run ends at (shown as "step s/end").
    label: a prefix naming the run ("level 3", "snip").
  """

  def __init__(self, end_step: int, label: str = ""):
    self.end_step, self.prefix = end_step, f"{label} | " if label else ""
    self._last_time, self._last_step = time.perf_counter(), None

  def write_scalars(self, step: int, scalars: Scalars) -> None:
    now = time.perf_counter()
    steps = 0 if self._last_step is None else step - self._last_step
    text = f"{self.prefix}step {step}/{self.end_step}"
    if steps > 0:
      text += f" | {steps / max(now - self._last_time, 1e-9):,.0f} steps/s"
    self._last_time, self._last_step = now, step
    if "train_loss" in scalars:
      text += (f" | train loss {scalars['train_loss']:.3f} "
               f"acc {scalars.get('train_accuracy', float('nan')):.1%}")
    if "val_loss" in scalars:
      text += f" | val loss {scalars['val_loss']:.3f}"
    if "test_accuracy" in scalars:
      text += f" | test acc {scalars['test_accuracy']:.1%}"
    note(text)

  def start(self, step: int) -> None:
    """Marks where the steps/s of the first line are counted from."""
    self._last_time, self._last_step = time.perf_counter(), step

  def flush(self) -> None:
    pass


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
