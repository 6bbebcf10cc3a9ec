"""From stored examples to model inputs: normalisation and augmentation (jittable).

Images are stored in their raw dtype (uint8) and normalised inside the
compiled step, which keeps CIFAR at 150 MB on the device.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lotto.data.registry import Dataset


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


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """How raw stored inputs become model inputs (static for compilation)."""
  scale: float
  mean: tuple[float, ...]
  std: tuple[float, ...]
  augment: bool

  @classmethod
  def of(cls, dataset: Dataset) -> "InputSpec":
    return cls(dataset.scale, dataset.mean, dataset.std, dataset.augment)

  def __call__(self, raw: jax.Array, key: jax.Array | None) -> jax.Array:
    x = raw.astype(jnp.float32) * self.scale
    if self.augment and key is not None:
      x = augment_images(key, x)
    return preprocess(x, 1.0, self.mean, self.std)
