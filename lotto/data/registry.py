"""Datasets by name: MNIST-1D (the default), real MNIST digits shipped in a package, tfds,
Shakespeare's works as characters (`shakespeare_char`, next-character labels [n, context]).

Datasets here are small enough to hold in memory and on the accelerator, so
whole blocks of training steps can run inside one compiled loop.
`load_dataset(name, ...)` loads a registered dataset and holds out a fixed
validation split.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.rng import purpose_key
from lotto.data.mnist1d import load_mnist1d
from lotto.data.mnist_5k import load_mnist_5k
from lotto.data.shakespeare_char import VOCAB_SIZE, load_shakespeare_char
from lotto.data.tfds import load_tfds


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train/validation/test arrays of one dataset plus how to normalise them.

  Attributes:
    name: registry name.
    num_classes: number of labels.
    x_train, y_train: training examples (validation examples removed).
    x_val, y_val: held-out validation examples (may be empty).
    x_test, y_test: test examples.
    scale: multiplies raw inputs first (1/255 for uint8 images).
    mean, std: per-channel normalisation applied after `scale`.
    augment: whether CIFAR-style augmentation (crop + flip) applies.
  """
  name: str
  num_classes: int
  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool = False

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example."""
    return tuple(self.x_train.shape[1:])


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to load and normalise one named dataset.

  Attributes:
    loader: `loader(name, data_dir, download, cache_dir)` -> dict of x, y,
      x_test, y_test arrays.
  """
  loader: Callable[[str, str | None, bool, str | None], dict]
  num_classes: int
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool


def _mnist1d(name, data_dir, download, cache_dir) -> dict:
  del name, data_dir, download
  return load_mnist1d(cache_dir)


def _tfds(name, data_dir, download, cache_dir) -> dict:
  del cache_dir
  return load_tfds(name, data_dir, download)


def _mnist_5k(name, data_dir, download, cache_dir) -> dict:
  del name, data_dir, download, cache_dir
  return load_mnist_5k()


def _shakespeare_char(name, data_dir, download, cache_dir) -> dict:
  del name, data_dir, download, cache_dir
  return load_shakespeare_char()


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.register("mnist1d", DatasetSpec(_mnist1d, 10, 1.0, (0.0,), (1.0,), False))
DATASETS.register("mnist_5k", DatasetSpec(_mnist_5k, 10, 1 / 255, (0.1307,), (0.3081,), False))
DATASETS.register("shakespeare_char", DatasetSpec(_shakespeare_char, VOCAB_SIZE, 1.0, (0.0,),
                                                 (1.0,), False))
DATASETS.register("mnist", DatasetSpec(_tfds, 10, 1 / 255, (0.1307,), (0.3081,), False))
DATASETS.register("fashion_mnist", DatasetSpec(_tfds, 10, 1 / 255, (0.2860,), (0.3530,), False))
DATASETS.register("cifar10", DatasetSpec(_tfds, 10, 1 / 255, (0.4914, 0.4822, 0.4465),
                                         (0.2470, 0.2435, 0.2616), True))
DATASETS.register("cifar100", DatasetSpec(_tfds, 100, 1 / 255, (0.5071, 0.4865, 0.4409),
                                          (0.2673, 0.2564, 0.2762), True))


def load_dataset(name: str, validation_size: int = 0, data_dir: str | None = None,
                 download: bool = False, augment: bool | None = None,
                 cache_dir: str | None = None) -> Dataset:
  """Loads a registered dataset and holds out a validation split.

  Args:
    name: a registered dataset name.
    validation_size: examples held out from train for early stopping. The
      held-out set is fixed (independent of the run seed), so runs with
      different seeds are evaluated on the same examples.
    data_dir: tfds data_dir (tfds datasets only).
    download: let tfds download and prepare (off by default; needs network).
    augment: CIFAR crop+flip; None means the dataset's default.
    cache_dir: where MNIST-1D is cached (None: `$LOTTO_CACHE` or ~/.cache/lotto).

  Raises:
    ConfigError: unknown name, bad validation size, or missing tfds data.
  """
  spec = DATASETS.get(name)
  raw = spec.loader(name, data_dir, download, cache_dir)
  n = len(raw["x"])
  if not isinstance(validation_size, int) or not 0 <= validation_size < n:
    raise ConfigError(f"data.validation_size must be an int in [0, {n}); got {validation_size!r}")
  order = np.asarray(jax.random.permutation(purpose_key(0, "validation_split"), n))
  val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
  return Dataset(
      name=name, num_classes=spec.num_classes,
      x_train=raw["x"][train_idx], y_train=raw["y"][train_idx].astype(np.int32),
      x_val=raw["x"][val_idx], y_val=raw["y"][val_idx].astype(np.int32),
      x_test=raw["x_test"], y_test=raw["y_test"].astype(np.int32),
      scale=spec.scale, mean=spec.mean, std=spec.std,
      augment=spec.augment if augment is None else bool(augment))
