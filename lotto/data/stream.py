"""The input pipelines: which one a run uses, and the `stream` pipeline's host-side reader.

`config.data.pipeline` picks how training examples reach the compiled steps:

- `resident`: the whole training set lives on the device and each block of steps
  receives its int32 batch indices (`batch_indices`), gathered inside the step;
- `stream`: the examples of each block are read on the host from a random-access
  source (`lotto.data.examples`) in exactly the order `batch_indices` gives, by
  grain in background threads while the previous block computes, and handed to the
  same compiled step; host memory is bounded by the prefetch depth, whatever the
  dataset's size;
- `auto` (the default): `resident` when the training set fits under
  `config.data.resident_limit_mb`, `stream` otherwise (`choose_pipeline`).

Augmentation stays inside the compiled step, keyed by (seed, step), so both
pipelines feed the step the same batches and give the same params. The exception is a
source that makes its own training views on the host (`host_augmented`: ImageNet's
random-resized crops of images of varying sizes, `lotto.data.cropped_images`), which
can only be streamed: grain reads and crops its examples one by one in
`view_threads` threads, each view keyed by (seed, step, example index), so the
stream is the same whatever the threads, chunks or resumes.
"""
from __future__ import annotations

import functools
import os
import weakref
from typing import Sequence

import numpy as np

from lotto.core.errors import ConfigError, DataError
from lotto.data.batching import batch_indices
from lotto.data.cropped_images import host_augmented
from lotto.data.examples import Examples

PIPELINES = ("auto", "resident", "stream")
# The training set may take this much device memory before `auto` streams it: a fraction
# of any accelerator's memory (16 GB and up), and more than every dataset lotto ships
# with (CIFAR-10: 150 MB, MNIST: 45 MB) but less than ImageNet (tens of GB).
DEFAULT_RESIDENT_LIMIT_MB = 2048.0
# The stream reads and transfers examples in chunks of at most resident_limit_mb / 16; it
# holds at most 5 chunks at once (2 read ahead, 1 being handed over, 2 on the devices).
CHUNKS_PER_LIMIT = 16
PREFETCH_CHUNKS = 2
READ_THREADS = 2


def view_threads() -> int:
  """Threads that decode and crop a host-augmented source's examples: one per core (PIL
  decodes and resizes without holding the GIL)."""
  return max(2, os.cpu_count() or 2)


def choose_pipeline(pipeline: str, train_bytes: int, limit_mb: float, name: str) -> str:
  """The pipeline a run uses: "resident" or "stream".

  Args:
    pipeline: `config.data.pipeline` (auto | resident | stream).
    train_bytes: the training set's size on the device (examples and labels).
    limit_mb: `config.data.resident_limit_mb`.
    name: the dataset's name (for messages).

  Raises:
    ConfigError: an unknown pipeline, or `resident` for a training set over the limit
      (one line with the estimate and what to do).
  """
  if not isinstance(pipeline, str) or pipeline not in PIPELINES:
    raise ConfigError(f"unknown data.pipeline {pipeline!r}; valid choices: "
                      f"{', '.join(PIPELINES)}")
  megabytes = train_bytes / 2**20
  size = f"{megabytes:,.1f}" if megabytes < 10 else f"{megabytes:,.0f}"
  if pipeline == "auto":
    return "resident" if megabytes <= limit_mb else "stream"
  if pipeline == "resident" and megabytes > limit_mb:
    raise ConfigError(f"data.pipeline=resident: the {name} training set takes about "
                      f"{size} MB on the device, over data.resident_limit_mb="
                      f"{limit_mb:g}; use data.pipeline=stream (or auto), or raise "
                      "data.resident_limit_mb if the device has the memory")
  return pipeline


def chunk_steps(step_bytes: int, limit_mb: float, longest: int) -> int:
  """Steps per chunk the stream reads and transfers at once: as many as fit in
  resident_limit_mb / 16 (at least 1, at most `longest`)."""
  budget = limit_mb * 2**20 / CHUNKS_PER_LIMIT
  return int(max(1, min(longest, budget // max(1, step_bytes))))


def read_steps(examples: Examples, batch_size: int, columns: tuple[int, int],
               seeds: int | Sequence[int], first: int, count: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """The examples and labels of steps [first, first + count) in `batch_indices` order.

  Args:
    examples: the training examples.
    batch_size: the global batch.
    columns: the batch columns [start, stop) to read.
    seeds: one seed ([count, columns] arrays) or a sequence of K seeds ([count, K,
      columns] arrays: a population, each replica in its seed's order).
    first, count: the steps.
  """
  replicas = not isinstance(seeds, (int, np.integer))
  orders = [batch_indices(int(s), len(examples), batch_size, first, count)
            for s in (seeds if replicas else (seeds,))]
  rows = np.stack(orders, axis=1) if replicas else orders[0]
  rows = rows[..., columns[0]:columns[1]]
  if host_augmented(examples):  # each view keyed by (its replica's seed, its step, its row)
    step_of = np.broadcast_to(
        np.arange(first, first + count).reshape(-1, *[1] * (rows.ndim - 1)), rows.shape)
    seed_of = np.broadcast_to(np.asarray(seeds).reshape(1, -1, 1) if replicas else seeds,
                              rows.shape)
    x, y = examples.read_augmented(rows.reshape(-1), seed_of.reshape(-1), step_of.reshape(-1))
  else:
    x, y = examples.read(rows.reshape(-1))
  return x.reshape(*rows.shape, *x.shape[1:]), y.reshape(rows.shape)


def _view(examples: Examples, batch_size: int, columns: tuple[int, int], seeds: tuple[int, ...],
          start: int, index: int) -> tuple[np.ndarray, np.ndarray]:
  """Example `index` of the flat sequence (step, replica, column) from step `start`: its
  training view and label (`read_augmented` of one row)."""
  width = columns[1] - columns[0]
  step, rest = divmod(index, len(seeds) * width)
  replica, column = divmod(rest, width)
  seed, step = seeds[replica], start + step
  row = batch_indices(seed, len(examples), batch_size, step, 1)[0, columns[0] + column]
  x, y = examples.read_augmented(np.asarray([row]), np.asarray([seed]), np.asarray([step]))
  return x[0], y[0]


def _group(shape: tuple[int, ...], batch: tuple[np.ndarray, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray]:
  """A batch of consecutive views as [steps, *shape] (shape: (columns,) or (K, columns))."""
  x, y = batch
  return x.reshape(-1, *shape, *x.shape[1:]), y.reshape(-1, *shape, *y.shape[1:])


class StepStream:
  """The training examples of consecutive steps, read by grain ahead of their use.

  `take(seeds, start, n)` returns the examples of steps [start, start + n) in the
  order of `batch_indices(seed, ...)`: [n, batch] (or [n, K, batch] with a replica
  axis) examples and labels. Reading runs ahead in chunks of `group_steps` steps
  (`PREFETCH_CHUNKS` of them, in `READ_THREADS` threads) from where the last take
  ended; a take anywhere else (a resume, a rewind, other seeds) restarts the reader
  there. Only the batch columns [columns[0], columns[1]) are read: a process of a
  multi-process run reads only its own rows of every global batch.
  """

  def __init__(self, examples: Examples, batch_size: int, group_steps: int,
               replica_axis: bool = False, columns: tuple[int, int] | None = None,
               end_step: int = 0, threads: int | None = None):
    """A stream that reads nothing until its first take.

    Args:
      examples: the training examples (`lotto.data.examples`).
      batch_size: the global batch (the order's unit).
      group_steps: steps read per chunk.
      replica_axis: K seeds' batches stacked on axis 1 (a population's trainer).
      columns: the batch columns this process reads; None: all.
      end_step: reading ahead stops here (the end of training); takes beyond restart.
      threads: the reader threads (None: READ_THREADS, or `view_threads()` for a
        host-augmented source, which is read example by example).
    """
    self.examples, self.batch_size = examples, batch_size
    self.group_steps, self.replica_axis = max(1, int(group_steps)), replica_axis
    self.columns = (0, batch_size) if columns is None else tuple(columns)
    self.end_step = end_step
    self.views = host_augmented(examples)
    self.threads = threads or (view_threads() if self.views else READ_THREADS)
    self._position: tuple[tuple[int, ...], int] | None = None  # (seeds, next step)
    self._iterator = None
    self._group: tuple[np.ndarray, np.ndarray] | None = None
    self._offset = 0
    self._finalizer = None

  def _restart(self, seeds: tuple[int, ...], start: int, num_steps: int) -> None:
    import grain  # pylint: disable=import-outside-toplevel
    self.close()
    stop = max(self.end_step, start + num_steps)
    groups = -(-(stop - start) // self.group_steps)
    # The reader threads hold no reference to this stream (its finalizer closes them).
    size = self.group_steps
    if self.views:  # one view at a time in each thread, grouped into steps afterwards
      width = self.columns[1] - self.columns[0]
      per_step = len(seeds) * width
      view = functools.partial(_view, self.examples, self.batch_size, self.columns, seeds,
                               start)
      shape = (len(seeds), width) if self.replica_axis else (width,)
      dataset = grain.MapDataset.range((stop - start) * per_step).map(view).to_iter_dataset(
          grain.ReadOptions(num_threads=self.threads,
                            prefetch_buffer_size=max(2 * self.threads, size * per_step))
      ).batch(size * per_step).map(functools.partial(_group, shape))
    else:
      read = functools.partial(read_steps, self.examples, self.batch_size, self.columns,
                               seeds if self.replica_axis else seeds[0])
      dataset = grain.MapDataset.range(groups).map(
          lambda g: read(start + g * size, min(size, stop - start - g * size))
      ).to_iter_dataset(grain.ReadOptions(num_threads=self.threads,
                                          prefetch_buffer_size=PREFETCH_CHUNKS))
    self._iterator = iter(dataset)
    self._finalizer = weakref.finalize(self, self._iterator.close)
    self._group, self._offset, self._position = None, 0, (seeds, start)

  def take(self, seeds: Sequence[int], start: int, num_steps: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """The examples and labels of steps [start, start + num_steps) in each seed's order.

    Raises:
      DataError: a file of the source is missing, truncated or unreadable.
    """
    seeds = tuple(int(s) for s in seeds)
    if self._position != (seeds, start):
      self._restart(seeds, start, num_steps)
    xs, ys, needed = [], [], num_steps
    while needed:
      if self._group is None or self._offset == len(self._group[0]):
        try:
          self._group, self._offset = next(self._iterator), 0
        except StopIteration:  # past end_step: read on from here
          self._restart(seeds, start + num_steps - needed, needed)
          continue
        except DataError as error:  # one line, without grain's note on its traceback
          self.close()
          raise DataError(error.path, error.problem, error.advice) from None
      count = min(needed, len(self._group[0]) - self._offset)
      xs.append(self._group[0][self._offset:self._offset + count])
      ys.append(self._group[1][self._offset:self._offset + count])
      self._offset += count
      needed -= count
    self._position = (seeds, start + num_steps)
    if len(xs) == 1:
      return xs[0], ys[0]
    return np.concatenate(xs), np.concatenate(ys)

  def close(self) -> None:
    """Stops the reader threads (a later take starts new ones)."""
    if self._finalizer is not None:
      self._finalizer()
    self._iterator = self._finalizer = self._group = self._position = None
