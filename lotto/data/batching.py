"""The order of training examples: a function of (seed, epoch) and the global step.

The host sends only int32 batch indices per block of steps (or, with the `stream`
pipeline, the examples they name); because they are a function of the global
step, a run resumed or rewound to step k sees the same batches as an
uninterrupted one.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.rng import purpose_key
from lotto.data.examples import Examples


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of training examples in `epoch` for run `seed`."""
  key = jax.random.fold_in(purpose_key(seed, "data_order"), epoch)
  return np.asarray(jax.random.permutation(key, num_examples), np.int32)


@functools.lru_cache(maxsize=8)
def _cached_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """`epoch_permutation`, kept for the blocks (and the stream's reader threads) that follow:
  read-only, so no caller can change another's order."""
  permutation = epoch_permutation(seed, epoch, num_examples)
  permutation.setflags(write=False)
  return permutation


def batch_indices(seed: int, num_examples: int, batch_size: int, start_step: int,
                  num_steps: int) -> np.ndarray:
  """Example indices of steps [start_step, start_step + num_steps).

  Each epoch is a fresh permutation keyed by (seed, epoch); the last partial
  batch of an epoch is dropped. Because the order is a function of the global
  step, training resumed or rewound to step k continues the same order.

  Returns:
    int32 array [num_steps, batch_size].
  """
  steps_per_epoch = num_examples // batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"data.batch_size={batch_size} exceeds the {num_examples} training examples")
  rows = []
  cached_epoch, permutation = -1, None
  for step in range(start_step, start_step + num_steps):
    epoch, position = divmod(step, steps_per_epoch)
    if epoch != cached_epoch:
      cached_epoch, permutation = epoch, _cached_permutation(seed, epoch, num_examples)
    rows.append(permutation[position * batch_size:(position + 1) * batch_size])
  return np.stack(rows) if rows else np.zeros((0, batch_size), np.int32)


def _balanced_rows(key: jax.Array, y: np.ndarray, num_classes: int, per_class: int
                   ) -> np.ndarray:
  chosen = []
  for label in range(num_classes):
    candidates = np.flatnonzero(y == label)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, label), len(candidates)))
    chosen.extend(candidates[order[:per_class]].tolist())
  return np.asarray(sorted(chosen), np.int64)


def balanced_batch(key: jax.Array, x: np.ndarray, y: np.ndarray, num_classes: int,
                   per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """A class-balanced batch: `per_class` random examples of every class.

  Classes with fewer examples contribute all they have.
  """
  chosen = _balanced_rows(key, y, num_classes, per_class)
  return x[chosen], y[chosen]


def balanced_sample(key: jax.Array, examples: Examples, num_classes: int,
                    per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """`balanced_batch` of a random-access source (the same examples for the same labels):
  reads every label, then only the chosen examples."""
  return examples.read(_balanced_rows(key, examples.labels(), num_classes, per_class))
