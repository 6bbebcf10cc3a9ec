"""Images of varying sizes read as fixed-size examples, cropped on the host (ImageNet).

`CroppedImages` wraps a source of decoded images whose sizes differ (a tfds split:
`read_list(indices)` -> a list of [h, w, 3] uint8 images and their labels) and
presents them as `Examples` of `size` x `size` x 3:

- `read(indices)`: the evaluation view of each image (`crops.eval_view`: shorter
  side resized to size / 0.875, centre crop); what evaluation, pruning scores and
  calibration samples read;
- `read_augmented(indices, seeds, steps)`: the training view of each image
  (`crops.train_view`: random-resized crop and flip) keyed by (seed, step, index),
  or the evaluation view when augmentation is off. The `stream` pipeline reads
  training examples through it (`host_augmented`), in background threads.

`Subset` passes `read_augmented` through with the source's own indices, so a view is
keyed by the image's index in its split whatever rows a validation split took away.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lotto.data import crops
from lotto.data.examples import read_all


class RaggedImages(Protocol):
  """Decoded images whose sizes differ (`lotto.data.tfds.TfdsExamples` is one)."""

  def __len__(self) -> int: ...

  def read_list(self, indices: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """([h, w, c] uint8 images at `indices`, int32 labels [n])."""


def host_augmented(examples: Any) -> bool:
  """Whether a source makes its training views itself (`read_augmented`)."""
  return bool(getattr(examples, "host_augment", False))


class CroppedImages:
  """Varying-size images as `size` x `size` examples: evaluation views by `read`, training
  views by `read_augmented`.

  Attributes:
    images: the decoded images.
    size: the side of every view.
    augment: training views are random-resized crops and flips (else evaluation views).
    files: the source's files, for naming a damaged one.
  """
  host_augment = True

  def __init__(self, images: RaggedImages, size: int, augment: bool = True,
               channels: int = 3):
    self.images, self.size, self.augment = images, int(size), bool(augment)
    self.example_shape = (self.size, self.size, channels)
    self.example_dtype = np.dtype(np.uint8)
    self.label_shape = ()
    self.files = getattr(images, "files", [])

  def __len__(self) -> int:
    return len(self.images)

  def _stack(self, views: list[np.ndarray]) -> np.ndarray:
    if not views:
      return np.zeros((0, *self.example_shape), self.example_dtype)
    return np.stack([view.reshape(self.example_shape) for view in views])

  def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation views and labels of the images at `indices`."""
    images, labels = self.images.read_list(np.asarray(indices).reshape(-1))
    return self._stack([crops.eval_view(image, self.size) for image in images]), labels

  def read_augmented(self, indices: np.ndarray, seeds: np.ndarray, steps: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The training views and labels of the images at `indices`.

    Args:
      indices: the images [n].
      seeds, steps: [n] each: the run seed and global step each view is read for.
    """
    indices = np.asarray(indices).reshape(-1)
    if not self.augment:
      return self.read(indices)
    images, labels = self.images.read_list(indices)
    views = [crops.train_view(image, self.size, crops.example_uniforms(seed, step, index))
             for image, index, seed, step in zip(images, indices.tolist(),
                                                 np.asarray(seeds).reshape(-1).tolist(),
                                                 np.asarray(steps).reshape(-1).tolist())]
    return self._stack(views), labels

  def labels(self) -> np.ndarray:
    """Every label (decodes every image)."""
    return read_all(self)[1]
