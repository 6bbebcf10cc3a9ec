"""tfds datasets read from prepared array_record files (no TensorFlow, no download).

`open_tfds` opens the train split as random-access `TfdsExamples` (what the `stream`
pipeline reads batch by batch, and the resident pipeline reads whole) and loads the test
split; `load_tfds` reads both splits whole.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from lotto.core.errors import ConfigError
from lotto.data.examples import RecordFile, read_all, read_guarded


def _open_split(name: str, split: str, data_dir: str | None, download: bool):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  where = data_dir or "~/tensorflow_datasets"
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  except Exception as error:  # tfds raises several unrelated types here
    raise ConfigError(
        f"tfds dataset {name!r} is not prepared in {where} ({type(error).__name__}); prepare "
        f"it where there is network with `tfds build {name} --data_dir=DIR "
        f"--file_format=array_record` and set config.data.data_dir=DIR") from None


def split_files(source: Any) -> list[RecordFile]:
  """The array_record files of a tfds data source, in record order ([] when the source
  does not say, as tfds.testing.mock_data's do not)."""
  try:
    instructions = source.dataset_info.splits[source.split].file_instructions
    return [RecordFile(os.fspath(fi.filename), int(fi.take)) for fi in instructions]
  except Exception:  # pylint: disable=broad-except
    return []


class TfdsExamples:
  """The examples of a tfds split (its array_record files), decoded by tfds.

  Attributes:
    files: the split's files, for naming a damaged one.
  """

  def __init__(self, source: Any, what: str):
    self.source, self.what = source, what
    self.files = split_files(source)
    image = np.asarray(self._records([0])[0]["image"])  # the first: shape and dtype
    self.example_shape, self.example_dtype = tuple(image.shape), image.dtype
    self.label_shape = ()

  def _records(self, keys: Sequence[int]) -> list:
    def read(keys):
      try:
        return list(self.source.__getitems__(list(keys)))
      except (AttributeError, TypeError):
        # tfds.testing.mock_data's sources only support single-index reads.
        return [self.source[k] for k in keys]
    return read_guarded(self.files, self.what, keys, read)

  def __len__(self) -> int:
    return len(self.source)

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decoded images and labels at `indices`."""
    keys = [int(k) for k in np.asarray(indices).reshape(-1)]
    if not keys:
      return np.zeros((0, *self.example_shape), self.example_dtype), np.zeros((0,), np.int32)
    records = self._records(keys)
    images = np.stack([np.asarray(r["image"]) for r in records])
    return images, np.asarray([int(r["label"]) for r in records], np.int32)

  def labels(self) -> np.ndarray:
    """Every label (decodes every record)."""
    return read_all(self)[1]


def open_tfds(name: str, data_dir: str | None = None, download: bool = False) -> dict:
  """The train split as `TfdsExamples` (nothing read yet) and the test split read whole.

  Raises:
    ConfigError: the dataset is not prepared in `data_dir` (and `download` is
      off); the message says how to prepare it.
    DataError: a file of the splits is damaged (naming it).
  """
  train = _open_split(name, "train", data_dir, download)
  test = _open_split(name, "test", data_dir, download)
  x_test, y_test = read_all(TfdsExamples(test, f"tfds {name} test split"))
  return dict(train=TfdsExamples(train, f"tfds {name} train split"), x_test=x_test,
              y_test=y_test)


def load_tfds(name: str, data_dir: str | None = None, download: bool = False) -> dict:
  """Reads a prepared tfds dataset through `tfds.data_source` (no TensorFlow).

  Raises:
    ConfigError: as `open_tfds`.
  """
  opened = open_tfds(name, data_dir, download)
  x, y = read_all(opened["train"])
  return dict(x=x, y=y, x_test=opened["x_test"], y_test=opened["y_test"])
