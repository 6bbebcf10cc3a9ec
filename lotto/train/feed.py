"""The `stream` pipeline's side of training: blocks of steps fed from the host.

`StreamFeed.run` trains steps [begin, end) the way the resident block does, but
from examples the host reads (`lotto.data.StepStream`, in `batch_indices` order):
the steps go in chunks of at most `resident_limit_mb / 16` of examples; each
chunk is placed on the devices (sharded over the mesh like the resident indices,
from this process's columns only) and handed to the same compiled step. JAX
dispatches asynchronously, so the next chunk is read (by grain's threads) and
transferred while the current one computes; at most two chunks are in flight on
the devices, which with grain's read-ahead bounds memory whatever the dataset's
size.
"""
from __future__ import annotations

import collections
from typing import Sequence

import jax

from lotto.data.examples import example_bytes
from lotto.data.stream import StepStream, chunk_steps
from lotto.runtime import devices
from lotto.train.block import make_stream_block
from lotto.train.state import TrainState
from lotto.train.step import Metrics, StepFn

IN_FLIGHT = 2  # chunks dispatched to the devices and not yet finished


class StreamFeed:
  """Compiled stream blocks and the host reader of one trainer.

  Attributes:
    stream: the host reader.
    chunk: steps per chunk.
  """

  def __init__(self, setup, step_fn: StepFn, first_step_fn: StepFn | None, loop: str,
               replicas: int, limit_mb: float):
    """Compiles nothing yet; the reader starts at the first `run`.

    Args:
      setup: the trainer's `TrainSetup` (dataset, batch_size, mesh, eval_every,
        total_steps).
      step_fn, first_step_fn, loop: as `make_train_block`.
      replicas: K (a leading replica axis when K > 1).
      limit_mb: `data.resident_limit_mb` (the chunks' budget is a 16th of it).
    """
    self.setup = setup
    examples = setup.dataset.train_examples()
    columns = devices.local_columns(setup.mesh, setup.batch_size)
    step_bytes = replicas * (columns[1] - columns[0]) * example_bytes(examples)
    self.chunk = chunk_steps(step_bytes, limit_mb, longest=max(1, setup.eval_every))
    self.stream = StepStream(examples, setup.batch_size, self.chunk, replica_axis=replicas > 1,
                             columns=columns, end_step=setup.total_steps)
    batched = replicas > 1
    self._first = make_stream_block(step_fn, loop, first_step_fn, batched)
    self._plain = self._first if first_step_fn is None else make_stream_block(
        step_fn, loop, None, batched)

  def run(self, state: TrainState, seeds: Sequence[int], begin: int, end: int
          ) -> tuple[TrainState, list[Metrics]]:
    """Steps [begin, end) in each seed's order; only the first step may update masks.

    Returns:
      (the state, each chunk's metrics: arrays still on the device).

    Raises:
      DataError: a file of the training set is missing, truncated or unreadable.
    """
    collected: list[Metrics] = []
    pending = collections.deque()
    for first in range(begin, end, self.chunk):
      count = min(self.chunk, end - first)
      x, y = self.stream.take(seeds, first, count)
      x = devices.shard_local_rows(x, self.setup.mesh, self.setup.batch_size)
      y = devices.shard_local_rows(y, self.setup.mesh, self.setup.batch_size)
      state, metrics = (self._first if first == begin else self._plain)(state, x, y)
      collected.append(metrics)
      pending.append(metrics)
      if len(pending) > IN_FLIGHT:  # bound what waits on the devices
        jax.block_until_ready(pending.popleft())
    return state, collected

  def close(self) -> None:
    """Stops the reader threads."""
    self.stream.close()
