"""Datasets by name: MNIST-1D (the default), real MNIST digits shipped in a package, tfds,
Shakespeare's works as characters (`shakespeare_char`, next-character labels [n, context]),
ImageNet 2012 (`imagenet2012`: images of varying sizes, cropped on the host).

`load_dataset(name, ...)` loads a registered dataset, holds out a fixed
validation split and resolves the input pipeline (`lotto.data.stream`): a
resident training set is held in host arrays (and put on the device whole); a
streamed tfds training set stays on disk as random-access `Examples`, read a
block of steps at a time. The other datasets are in memory either way.

A dataset cropped on the host (`DatasetSpec.image_size` > 0: `imagenet2012`) is
streamed only, its evaluation splits too: every split is a `CroppedImages` source of
`image_size` x `image_size` views (random-resized crops and flips for training when
augmentation is on, resize and centre crop otherwise), read a batch at a time.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from lotto.core.errors import ConfigError
from lotto.core.registry import Registry
from lotto.core.rng import purpose_key
from lotto.data.cropped_images import CroppedImages
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
    x_val, y_val: held-out validation examples (may be empty); None when streamed
      (`val_source`).
    x_test, y_test: test examples; None when streamed (`test_source`).
    scale: multiplies raw inputs first (1/255 for uint8 images).
    mean, std: per-channel normalisation applied after `scale`.
    augment: whether CIFAR-style augmentation (crop + flip) applies inside the step
      (False for a dataset cropped on the host: its source augments).
    pipeline: how training examples reach the steps: "resident" or "stream".
    train_source: the training examples on disk when they are not in host memory.
    val_source, test_source: the evaluation splits on disk when they are streamed too
      (a dataset cropped on the host).
    language_model: labels are next tokens (characters): the loss is nats per token,
      and evaluation also reports bits per character and perplexity.
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
  val_source: Examples | None = None
  test_source: Examples | None = None
  language_model: bool = False

  def train_examples(self) -> Examples:
    """The training examples as a random-access source (what `stream` reads)."""
    if self.train_source is not None:
      return self.train_source
    return ArrayExamples(self.x_train, self.y_train)

  def eval_examples(self, split: str) -> Examples:
    """The "val" or "test" split as a random-access source (streamed or in memory)."""
    source = self.val_source if split == "val" else self.test_source
    if source is not None:
      return source
    return ArrayExamples(*((self.x_val, self.y_val) if split == "val" else
                           (self.x_test, self.y_test)))

  @property
  def streams_evaluation(self) -> bool:
    """Whether the evaluation splits are read from disk a batch at a time."""
    return self.val_source is not None or self.test_source is not None

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
      `Examples` of the train split, read only as needed), x_test, y_test; for a
      dataset cropped on the host, of train and test (decoded images of varying sizes,
      `cropped_images.RaggedImages`).
    image_size: > 0 for a dataset cropped on the host: the default side of its views
      (`data.image_size` overrides it); 0: examples are used as stored.
    language_model: next-token labels (`Dataset.language_model`).
  """
  loader: Callable[[str, str | None, bool, str | None], dict]
  num_classes: int
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool
  language_model: bool = False
  image_size: int = 0


def _mnist1d(name, data_dir, download, cache_dir) -> dict:
  del name, data_dir, download
  return load_mnist1d(cache_dir)


def _tfds(name, data_dir, download, cache_dir) -> dict:
  del cache_dir
  return open_tfds(name, data_dir, download)


def _tfds_validation(name, data_dir, download, cache_dir) -> dict:
  """A tfds dataset whose labelled held-out split is "validation" (no "test" split)."""
  del cache_dir
  return open_tfds(name, data_dir, download, test_split="validation")


def _imagenet2012(name, data_dir, download, cache_dir) -> dict:
  """ImageNet 2012's train split and its validation split as the test set (the test
  split has no labels), both unread."""
  del cache_dir
  return open_tfds(name, data_dir, download, test_split="validation", read_test=False)


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
                                                 (1.0,), False, language_model=True))
DATASETS.register("mnist", DatasetSpec(_tfds, 10, 1 / 255, (0.1307,), (0.3081,), False))
DATASETS.register("fashion_mnist", DatasetSpec(_tfds, 10, 1 / 255, (0.2860,), (0.3530,), False))
DATASETS.register("cifar10", DatasetSpec(_tfds, 10, 1 / 255, (0.4914, 0.4822, 0.4465),
                                         (0.2470, 0.2435, 0.2616), True))
DATASETS.register("cifar100", DatasetSpec(_tfds, 100, 1 / 255, (0.5071, 0.4865, 0.4409),
                                          (0.2673, 0.2564, 0.2762), True))
# ImageNet's 1000 classes downsampled to 64x64 (Chrabaszcz et al. 2017): 1.28M training
# images, 15.7 GB as uint8, so `auto` streams it; crop (pad 4) and flip as for CIFAR. Its
# held-out split is "validation" (50,000 images, 614 MB: resident).
DATASETS.register("imagenet_resized/64x64", DatasetSpec(
    _tfds_validation, 1000, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True))
# ImageNet 2012 (ILSVRC2012, Russakovsky et al. 2015): 1.28M JPEG images of varying sizes
# and the 50,000 validation images as the test set, cropped on the host to 224 x 224.
DATASETS.register("imagenet2012", DatasetSpec(
    _imagenet2012, 1000, 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True,
    image_size=224))


def load_dataset(name: str, validation_size: int = 0, data_dir: str | None = None,
                 download: bool = False, augment: bool | None = None,
                 cache_dir: str | None = None, pipeline: str = "resident",
                 resident_limit_mb: float = DEFAULT_RESIDENT_LIMIT_MB,
                 image_size: int = 0) -> Dataset:
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
    image_size: the side of a host-cropped dataset's views (0: its default, 224 for
      imagenet2012); must be 0 for the other datasets.

  Raises:
    ConfigError: unknown name or pipeline, bad validation size or image size, missing
      tfds data, a resident training set over the limit, or `resident` asked of a
      dataset cropped on the host.
    DataError: a damaged tfds file.
  """
  spec = DATASETS.get(name)
  size = _image_size(spec, name, image_size)
  if size:  # streamed only: checked before anything is opened
    choose_pipeline(pipeline, 0, resident_limit_mb, name)
    if pipeline == "resident":
      raise ConfigError(f"data.pipeline=resident: {name} can only be streamed (its images "
                        "have varying sizes and are cropped on the host at every step); use "
                        "data.pipeline=stream or auto")
  raw = spec.loader(name, data_dir, download, cache_dir)
  source = raw.get("train")
  n = len(source) if source is not None else len(raw["x"])
  if not isinstance(validation_size, int) or not 0 <= validation_size < n:
    raise ConfigError(f"data.validation_size must be an int in [0, {n}); got {validation_size!r}")
  order = np.asarray(jax.random.permutation(purpose_key(0, "validation_split"), n))
  val_idx, train_idx = np.sort(order[:validation_size]), np.sort(order[validation_size:])
  augment = spec.augment if augment is None else bool(augment)
  if size:
    return _cropped(name, spec, raw, size, augment, train_idx, val_idx)
  fields = dict(name=name, num_classes=spec.num_classes, x_test=raw["x_test"],
                y_test=raw["y_test"].astype(np.int32), scale=spec.scale, mean=spec.mean,
                std=spec.std, augment=augment, language_model=spec.language_model)
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


def _image_size(spec: DatasetSpec, name: str, image_size: int) -> int:
  """The side of a host-cropped dataset's views (0 for the other datasets).

  Raises:
    ConfigError: not a non-negative int, or set for a dataset used as stored.
  """
  if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 0:
    raise ConfigError(f"data.image_size must be a non-negative int (0: the dataset's "
                      f"default); got {image_size!r}")
  if image_size and not spec.image_size:
    croppable = ", ".join(n for n in DATASETS.names() if DATASETS.get(n).image_size)
    raise ConfigError(f"data.image_size={image_size} applies only to the datasets cropped on "
                      f"the host ({croppable}); {name} is used at its stored size: set "
                      "data.image_size=0")
  return image_size or spec.image_size


def _cropped(name: str, spec: DatasetSpec, raw: dict, size: int, augment: bool,
             train_idx: np.ndarray, val_idx: np.ndarray) -> Dataset:
  """A host-cropped dataset: every split streamed as `size` x `size` views."""
  source = CroppedImages(raw["train"], size, augment)
  return Dataset(name=name, num_classes=spec.num_classes, x_train=None, y_train=None,
                 x_val=None, y_val=None, x_test=None, y_test=None, scale=spec.scale,
                 mean=spec.mean, std=spec.std, augment=False, pipeline="stream",
                 train_source=Subset(source, train_idx), val_source=Subset(source, val_idx),
                 test_source=CroppedImages(raw["test"], size, augment=False),
                 language_model=spec.language_model)
