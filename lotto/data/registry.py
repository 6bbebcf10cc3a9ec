"""Datasets by name: MNIST-1D (the default), real MNIST digits shipped in a package, tfds,
Shakespeare's works as characters (`shakespeare_char`, next-character labels [n, context]).

`load_dataset(name, ...)` loads a registered dataset, holds out a fixed
validation split and resolves the input pipeline (`lotto.data.stream`): a
resident training set is held in host arrays (and put on the device whole); a
streamed tfds training set stays on disk as random-access `Examples`, read a
block of steps at a time. The other datasets are in memory either way.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.rng import purpose_key
from lotto.data.examples import ArrayExamples, Examples, Subset, example_bytes, read_all
from lotto.data.mnist1d import load_mnist1d
from lotto.data.mnist_5k import load_mnist_5k
from lotto.data.shakespeare_char import VOCAB_SIZE, load_shakespeare_char
from lotto.data.stream import DEFAULT_RESIDENT_LIMIT_MB, choose_pipeline
from lotto.data.tfds import open_tfds


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train/validation/test arrays of one dataset plus how to normalise them.

  Attributes:
    name: registry name.
    num_classes: number of labels.
    x_train, y_train: training examples (validation examples removed); None when
      the training set is streamed from files (`train_source`).
    x_val, y_val: held-out validation examples (may be empty).
    x_test, y_test: test examples.
    scale: multiplies raw inputs first (1/255 for uint8 images).
    mean, std: per-channel normalisation applied after `scale`.
    augment: whether CIFAR-style augmentation (crop + flip) applies.
    pipeline: how training examples reach the steps: "resident" or "stream".
    train_source: the training examples on disk when they are not in host memory.
  """
  name: str
  num_classes: int
  x_train: np.ndarray | None
  y_train: np.ndarray | None
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool = False
  pipeline: str = "resident"
  train_source: Examples | None = None

  def train_examples(self) -> Examples:
    """The training examples as a random-access source (what `stream` reads)."""
    if self.train_source is not None:
      return self.train_source
    return ArrayExamples(self.x_train, self.y_train)

  @property
  def num_train(self) -> int:
    """Number of training examples."""
    return len(self.train_examples())

  @property
  def input_shape(self) -> tuple[int, ...]:
    """Shape of one example."""
    return tuple(self.train_examples().example_shape)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to load and normalise one named dataset.

  Attributes:
    loader: `loader(name, data_dir, download, cache_dir)` -> dict of x, y,
      x_test, y_test arrays (the whole dataset in memory), or of train (random-access
      `Examples` of the train split, read only as needed), x_test, y_test.
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
  return open_tfds(name, data_dir, download)


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
# ImageNet's 1000 classes downsampled to 64x64 (Chrabaszcz et al. 2017): 1.28M training
# images, 15.7 GB as uint8, so `auto` streams it; crop (pad 4) and flip as for CIFAR.
DATASETS.register("imagenet_resized/64x64", DatasetSpec(
    _tfds, 1000, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True))


def load_dataset(name: str, validation_size: int = 0, data_dir: str | None = None,
                 download: bool = False, augment: bool | None = None,
                 cache_dir: str | None = None, pipeline: str = "resident",
                 resident_limit_mb: float = DEFAULT_RESIDENT_LIMIT_MB) -> Dataset:
  """Loads a registered dataset, holds out a validation split and picks the pipeline.

  Args:
    name: a registered dataset name.
    validation_size: examples held out from train for early stopping. The
      held-out set is fixed (independent of the run seed), so runs with
      different seeds are evaluated on the same examples.
    data_dir: tfds data_dir (tfds datasets only).
    download: let tfds download and prepare (off by default; needs network).
    augment: CIFAR crop+flip; None means the dataset's default.
    cache_dir: where MNIST-1D is cached (None: `$LOTTO_CACHE` or ~/.cache/lotto).
    pipeline: "auto", "resident" or "stream" (`stream.choose_pipeline`). A streamed
      tfds training set is not read here; the others are in memory anyway.
    resident_limit_mb: the largest training set (examples and labels, MB) `auto`
      keeps on the device and `resident` accepts.

  Raises:
    ConfigError: unknown name or pipeline, bad validation size, missing tfds data,
      or a resident training set over the limit.
    DataError: a damaged tfds file.
  """
  spec = DATASETS.get(name)
  raw = spec.loader(name, data_dir, download, cache_dir)
  source = raw.get("train")
  n = len(source) if source is not None else len(raw["x"])
  if not isinstance(validation_size, int) or not 0 <= validation_size < n:
    raise ConfigError(f"data.validation_size must be an int in [0, {n}); got {validation_size!r}")
  order = np.asarray(jax.random.permutation(purpose_key(0, "validation_split"), n))
  val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
  fields = dict(name=name, num_classes=spec.num_classes, x_test=raw["x_test"],
                y_test=raw["y_test"].astype(np.int32), scale=spec.scale, mean=spec.mean,
                std=spec.std, augment=spec.augment if augment is None else bool(augment))
  if source is None:  # the whole dataset in memory
    x_train, y_train = raw["x"][train_idx], raw["y"][train_idx].astype(np.int32)
    chosen = choose_pipeline(pipeline, x_train.nbytes + y_train.nbytes, resident_limit_mb,
                             name)
    return Dataset(x_train=x_train, y_train=y_train, x_val=raw["x"][val_idx],
                   y_val=raw["y"][val_idx].astype(np.int32), pipeline=chosen, **fields)
  train = Subset(source, train_idx)
  x_val, y_val = read_all(Subset(source, val_idx))
  chosen = choose_pipeline(pipeline, len(train) * example_bytes(train), resident_limit_mb, name)
  if chosen == "resident":
    x_train, y_train = read_all(train)
    return Dataset(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                   pipeline=chosen, **fields)
  return Dataset(x_train=None, y_train=None, x_val=x_val, y_val=y_val, pipeline=chosen,
                 train_source=train, **fields)
