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


# Datasets tfds cannot download: the archives `tfds build` reads from --manual_dir.
MANUAL_DOWNLOADS = {
    "imagenet2012": "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from image-net.org)",
}


def _open_split(name: str, split: str, data_dir: str | None, download: bool):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  where = data_dir or "~/tensorflow_datasets"
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  except Exception as error:  # tfds raises several unrelated types here
    if name in MANUAL_DOWNLOADS:
      how = (f"put {MANUAL_DOWNLOADS[name]} in a directory M, then run `tfds build {name} "
             f"--data_dir=DIR --manual_dir=M --file_format=array_record` (TensorFlow needed)")
    else:
      how = (f"prepare it where there is network with `tfds build {name} --data_dir=DIR "
             "--file_format=array_record`")
    raise ConfigError(f"tfds dataset {name!r} is not prepared in {where} "
                      f"({type(error).__name__}); {how} and set config.data.data_dir=DIR"
                      ) from None


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
    if not keys:
      return []

    def read(keys):
      try:
        return list(self.source.__getitems__(list(keys)))
      except (AttributeError, TypeError):
        # tfds.testing.mock_data's sources only support single-index reads.
        return [self.source[k] for k in keys]
    return read_guarded(self.files, self.what, keys, read)

  def __len__(self) -> int:
    return len(self.source)

  def read_list(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The decoded images at `indices` as a list (their sizes may differ) and their labels."""
    records = self._records([int(k) for k in np.asarray(indices).reshape(-1)])
    return ([np.asarray(r["image"]) for r in records],
            np.asarray([int(r["label"]) for r in records], np.int32))

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decoded images and labels at `indices` (images of one size)."""
    images, labels = self.read_list(indices)
    if not images:
      return np.zeros((0, *self.example_shape), self.example_dtype), labels
    return np.stack(images), labels

  def labels(self) -> np.ndarray:
    """Every label (decodes every record)."""
    return read_all(self)[1]


def open_tfds(name: str, data_dir: str | None = None, download: bool = False,
              test_split: str = "test", read_test: bool = True) -> dict:
  """The train split as `TfdsExamples` (nothing read yet) and the test split.

  Args:
    name, data_dir, download: as `tfds.data_source`.
    test_split: the split evaluated as the test set ("validation" where the test
      split has no labels or does not exist, as for ImageNet).
    read_test: read the test split whole (x_test, y_test); False: return it as
      `TfdsExamples` under "test", nothing read.

  Raises:
    ConfigError: the dataset is not prepared in `data_dir` (and `download` is
      off); the message says how to prepare it.
    DataError: a file of the splits is damaged (naming it).
  """
  train = _open_split(name, "train", data_dir, download)
  test = TfdsExamples(_open_split(name, test_split, data_dir, download),
                      f"tfds {name} {test_split} split")
  train = TfdsExamples(train, f"tfds {name} train split")
  if not read_test:
    return dict(train=train, test=test)
  x_test, y_test = read_all(test)
  return dict(train=train, x_test=x_test, y_test=y_test)


def load_tfds(name: str, data_dir: str | None = None, download: bool = False) -> dict:
  """Reads a prepared tfds dataset through `tfds.data_source` (no TensorFlow).

  Raises:
    ConfigError: as `open_tfds`.
  """
  opened = open_tfds(name, data_dir, download)
  x, y = read_all(opened["train"])
  return dict(x=x, y=y, x_test=opened["x_test"], y_test=opened["y_test"])
