"""Evaluation splits read from disk a chunk of batches at a time (a dataset cropped on the
host: ImageNet's 50,000 validation images at 224 x 224 are 7.5 GB as uint8).

`eval_set(dataset, split, ...)` gives the split as the trainer evaluates it: an
`EvalSet` on the device when the dataset keeps its evaluation splits in memory, else
a `StreamedEvalSet`. A streamed split is padded into equal batches exactly as
`EvalSet` pads it (zero examples with weight 0 at the end); grain reads (and, for
`CroppedImages`, decodes and crops) its examples one by one in background threads,
and each chunk of at most `resident_limit_mb / 16` goes to the same compiled
evaluation function as it arrives, while the next chunk is read. The sums of loss
and correct predictions over the chunks are the split's.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lotto.data.examples import Examples, example_bytes
from lotto.data.registry import Dataset
from lotto.data.stream import PREFETCH_CHUNKS, chunk_steps, view_threads
from lotto.train.evaluate import EvalSet


def _padded_example(examples: Examples, index: int) -> tuple[np.ndarray, np.ndarray,
                                                             np.float32]:
  """Example `index` with its label and weight 1, or a zero example of weight 0 past the end."""
  if index >= len(examples):
    return (np.zeros(examples.example_shape, examples.example_dtype),
            np.zeros(examples.label_shape, np.int32), np.float32(0.0))
  x, y = examples.read(np.asarray([index]))
  return x[0], y[0], np.float32(1.0)


def _batches(batch_size: int, chunk: tuple[np.ndarray, np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  return tuple(a.reshape(-1, batch_size, *a.shape[1:]) for a in chunk)


class StreamedEvalSet:
  """An evaluation split on disk, evaluated a chunk of padded batches at a time.

  Attributes:
    examples: the split.
    size: its number of examples (padding excluded).
    batch_size: examples per batch (as `EvalSet` picks it).
    chunk: batches per chunk (all chunks the same shape: one compilation).
  """

  def __init__(self, examples: Examples, batch_size: int, limit_mb: float,
               threads: int | None = None):
    """Reads nothing until `sums`.

    Args:
      examples: the split.
      batch_size: `data.eval_batch_size`.
      limit_mb: `data.resident_limit_mb` (a chunk takes at most a 16th of it).
      threads: reader threads (None: `stream.view_threads()`).
    """
    self.examples, self.size = examples, len(examples)
    self.batch_size = max(1, min(batch_size, self.size)) if self.size else 1
    batches = max(1, math.ceil(self.size / self.batch_size))
    self.chunk = chunk_steps(self.batch_size * example_bytes(examples), limit_mb, batches)
    self.num_chunks = math.ceil(batches / self.chunk)
    self.threads = threads or view_threads()

  def chunks(self):
    """The padded chunks in order: (x [chunk, batch, ...], y, weights [chunk, batch])."""
    import grain  # pylint: disable=import-outside-toplevel
    per_chunk = self.chunk * self.batch_size
    read = functools.partial(_padded_example, self.examples)
    dataset = grain.MapDataset.range(self.num_chunks * per_chunk).map(read).to_iter_dataset(
        grain.ReadOptions(num_threads=self.threads,
                          prefetch_buffer_size=max(2 * self.threads, per_chunk))
    ).batch(per_chunk).map(functools.partial(_batches, self.batch_size))
    return iter(dataset)

  def sums(self, evaluate: Callable, *model: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(summed loss, correct count) of `evaluate(*model, x, y, weights)` over the chunks
    (the compiled evaluation function of `evaluate.make_eval_fn`); at most
    PREFETCH_CHUNKS chunks wait on the devices at a time."""
    loss = correct = None
    pending = []
    for x, y, weights in self.chunks():
      part = evaluate(*model, jnp.asarray(x), jnp.asarray(y), jnp.asarray(weights))
      loss = part[0] if loss is None else loss + part[0]
      correct = part[1] if correct is None else correct + part[1]
      pending.append(loss)
      if len(pending) > PREFETCH_CHUNKS:
        jax.block_until_ready(pending.pop(0))
    return jax.device_get((loss, correct))


def eval_set(dataset: Dataset, split: str, batch_size: int, limit_mb: float
             ) -> EvalSet | StreamedEvalSet:
  """The "val" or "test" split as the trainer evaluates it: on the device, or streamed
  when the dataset streams its evaluation splits (`Dataset.streams_evaluation`)."""
  if dataset.streams_evaluation:
    return StreamedEvalSet(dataset.eval_examples(split), batch_size, limit_mb)
  x, y = (dataset.x_val, dataset.y_val) if split == "val" else (dataset.x_test, dataset.y_test)
  return EvalSet.create(x, y, batch_size)
