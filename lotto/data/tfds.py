"""tfds datasets read from prepared array_record files (no TensorFlow, no download)."""
from __future__ import annotations

import numpy as np

from lotto.core.errors import ConfigError


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
