"""Datasets: MNIST-1D (generated offline, the default) and tfds data sources.

Datasets here are small enough to hold in memory and on the accelerator, so
whole blocks of training steps can run inside one compiled loop: the host only
sends the int32 batch indices of each block, computed deterministically from
(seed, epoch).

Images are kept in their stored dtype (uint8) and normalised inside the
compiled step (`preprocess`), which keeps CIFAR at 150 MB on the device.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import jax
import jax.numpy as jnp
import numpy as np

from lotto.errors import ConfigError
from lotto.registry import Registry
from lotto.rng import purpose_key


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


def preprocess(x: jax.Array, scale: float, mean, std) -> jax.Array:
  """Converts raw inputs to normalised float32 (jittable)."""
  return (x.astype(jnp.float32) * scale - jnp.asarray(mean, jnp.float32)) / jnp.asarray(
      std, jnp.float32)


def augment_images(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
  """Random crop after zero padding plus random horizontal flip (NHWC, jittable).

  Padding is applied to the raw-scale images, as torchvision's RandomCrop does
  before Normalize.
  """
  n, h, w, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * padding + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

  cropped = jax.vmap(crop)(padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (n,))
  return jnp.where(flip[:, None, None, None], cropped[:, :, ::-1, :], cropped)


MNIST1D_ARGS = dict(num_samples=5000, train_split=0.8, template_len=12, padding=[36, 60],
                    scale_coeff=0.4, max_translation=48, corr_noise_scale=0.25,
                    iid_noise_scale=2e-2, shear_scale=0.75, shuffle_seq=False,
                    final_seq_length=40, seed=42)


def default_cache_dir() -> str:
  return os.environ.get("LOTTO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "lotto"))


def load_mnist1d(cache_dir: str | None = None, **overrides) -> dict:
  """Generates MNIST-1D offline with the mnist1d package, cached on disk.

  The cache file name is a hash of the generator arguments, so changing any
  argument regenerates. mnist1d's download path is never used.

  Returns:
    dict with x, y, x_test, y_test (float32 / int32).
  """
  args = dict(MNIST1D_ARGS, **overrides)
  digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, f"mnist1d_{digest}.npz")
  if os.path.exists(path):
    with np.load(path) as stored:
      return {k: stored[k] for k in ("x", "y", "x_test", "y_test")}
  from mnist1d.data import make_dataset  # pylint: disable=import-outside-toplevel
  from mnist1d.utils import ObjectView  # pylint: disable=import-outside-toplevel
  raw = make_dataset(ObjectView(dict(args)))
  arrays = dict(x=raw["x"].astype(np.float32), y=raw["y"].astype(np.int32),
                x_test=raw["x_test"].astype(np.float32), y_test=raw["y_test"].astype(np.int32))
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
  return arrays


def _read_source(source, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
  images, labels = [], []
  for start in range(0, len(source), chunk):
    indices = list(range(start, min(start + chunk, len(source))))
    try:
      records = source.__getitems__(indices)
    except (AttributeError, TypeError):
      # tfds.testing.mock_data's sources only support single-index reads.
      records = [source[i] for i in indices]
    images.extend(np.asarray(r["image"]) for r in records)
    labels.extend(int(r["label"]) for r in records)
  return np.stack(images), np.asarray(labels, np.int32)


def load_tfds(name: str, data_dir: str | None = None, download: bool = False) -> dict:
  """Reads a prepared tfds dataset through `tfds.data_source` (no TensorFlow).

  Raises:
    ConfigError: the dataset is not prepared in `data_dir` (and `download`
      is off); the message says how to prepare it.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  where = data_dir or "~/tensorflow_datasets"
  try:
    train = tfds.data_source(name, split="train", data_dir=data_dir, download=download)
    test = tfds.data_source(name, split="test", data_dir=data_dir, download=download)
  except Exception as error:  # tfds raises several unrelated types here
    raise ConfigError(
        f"tfds dataset {name!r} is not prepared in {where} ({type(error).__name__}); prepare "
        f"it where there is network with `tfds build {name} --data_dir=DIR "
        f"--file_format=array_record` and set config.data.data_dir=DIR") from None
  x, y = _read_source(train)
  x_test, y_test = _read_source(test)
  return dict(x=x, y=y, x_test=x_test, y_test=y_test)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """How to load and normalise one named dataset."""
  loader: str  # "mnist1d" or "tfds"
  num_classes: int
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool


DATASETS: Registry[DatasetSpec] = Registry("dataset")
DATASETS.register("mnist1d", DatasetSpec("mnist1d", 10, 1.0, (0.0,), (1.0,), False))
DATASETS.register("mnist", DatasetSpec("tfds", 10, 1 / 255, (0.1307,), (0.3081,), False))
DATASETS.register("fashion_mnist", DatasetSpec("tfds", 10, 1 / 255, (0.2860,), (0.3530,), False))
DATASETS.register("cifar10", DatasetSpec("tfds", 10, 1 / 255, (0.4914, 0.4822, 0.4465),
                                         (0.2470, 0.2435, 0.2616), True))
DATASETS.register("cifar100", DatasetSpec("tfds", 100, 1 / 255, (0.5071, 0.4865, 0.4409),
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
    cache_dir: where MNIST-1D is cached.

  Raises:
    ConfigError: unknown name, bad validation size, or missing tfds data.
  """
  spec = DATASETS.get(name)
  raw = load_mnist1d(cache_dir) if spec.loader == "mnist1d" else load_tfds(name, data_dir, download)
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


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of training examples in `epoch` for run `seed`."""
  key = jax.random.fold_in(purpose_key(seed, "data_order"), epoch)
  return np.asarray(jax.random.permutation(key, num_examples), np.int32)


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
      cached_epoch, permutation = epoch, epoch_permutation(seed, epoch, num_examples)
    rows.append(permutation[position * batch_size:(position + 1) * batch_size])
  return np.stack(rows) if rows else np.zeros((0, batch_size), np.int32)


def balanced_batch(key: jax.Array, x: np.ndarray, y: np.ndarray, num_classes: int,
                   per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """A class-balanced batch: `per_class` random examples of every class.

  Classes with fewer examples contribute all they have.
  """
  chosen = []
  for label in range(num_classes):
    candidates = np.flatnonzero(y == label)
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, label), len(candidates)))
    chosen.extend(candidates[order[:per_class]].tolist())
  chosen = np.asarray(sorted(chosen), np.int64)
  return x[chosen], y[chosen]
