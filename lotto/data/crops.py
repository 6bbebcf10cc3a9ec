"""ImageNet's crops on the host: the random-resized training view and the evaluation view.

The standard ImageNet recipe (Szegedy et al. 2015, "Going deeper with convolutions",
as the ResNet and lottery-ticket papers train) sees each training image through

- a random crop box covering a fraction of the image's area uniform in [0.08, 1]
  with an aspect ratio (width / height) log-uniform in [3/4, 4/3]: up to 10 boxes
  are drawn and the first that fits inside the image is used; if none fits, the
  centre box of the whole image with its aspect ratio clamped to [3/4, 4/3];
- resized to `size` x `size` (bilinear; antialiased when shrinking, as PIL resizes);
- flipped left-right with probability 1/2;

and each evaluation image resized so its shorter side is `size / 0.875` (256 for
224), then its centre `size` x `size` cropped.

The randomness of one training view comes from `example_uniforms(seed, step,
example)`: numpy's `SeedSequence` hash of a named purpose, the run seed, the step and
the example's index, so a view is a function of those four numbers (the same on any
thread, process or resume) and never of the order in which views are made.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
from PIL import Image

CROP_AREA = (0.08, 1.0)       # fraction of the image's area
CROP_RATIO = (3 / 4, 4 / 3)   # width / height
CROP_ATTEMPTS = 10
EVAL_CROP_FRACTION = 0.875    # 224 of 256
UNIFORMS_PER_VIEW = 4 * CROP_ATTEMPTS + 1  # 4 per crop attempt, 1 for the flip
_PURPOSE = zlib.crc32(b"host_crops") & 0x7FFFFFFF

Box = tuple[int, int, int, int]  # (top, left, height, width)


def example_uniforms(seed: int, step: int, example: int, count: int = UNIFORMS_PER_VIEW
                     ) -> np.ndarray:
  """`count` uniforms in [0, 1) that are a function of (seed, step, example) only.

  Args:
    seed: the run seed (each replica of a population its own).
    step: the global train step the example is read for.
    example: the example's index in its source.
    count: how many.

  Returns:
    float64 [count], multiples of 2**-53.
  """
  words = np.random.SeedSequence((_PURPOSE, int(seed), int(step), int(example))
                                 ).generate_state(count, np.uint64)
  return (words >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _round(value: float) -> int:
  return int(math.floor(value + 0.5))


def sample_crop_box(uniforms: np.ndarray, height: int, width: int) -> Box:
  """The random-resized crop box of an image of `height` x `width`.

  Args:
    uniforms: [CROP_ATTEMPTS, 4] (or more rows' worth, flat) uniforms in [0, 1):
      per attempt the area fraction, the log aspect ratio, the top and the left.
    height, width: the image's size.

  Returns:
    (top, left, box height, box width): the first attempt that fits, else the
    centre box with the aspect ratio clamped to CROP_RATIO.
  """
  draws = np.asarray(uniforms, np.float64).reshape(-1)[:4 * CROP_ATTEMPTS].reshape(-1, 4)
  low_ratio, high_ratio = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
  for area_u, ratio_u, top_u, left_u in draws:
    area = height * width * (CROP_AREA[0] + area_u * (CROP_AREA[1] - CROP_AREA[0]))
    ratio = math.exp(low_ratio + ratio_u * (high_ratio - low_ratio))
    box_w, box_h = _round(math.sqrt(area * ratio)), _round(math.sqrt(area / ratio))
    if 0 < box_w <= width and 0 < box_h <= height:
      top = int(top_u * (height - box_h + 1))
      left = int(left_u * (width - box_w + 1))
      return top, left, box_h, box_w
  return centre_box(height, width)


def centre_box(height: int, width: int) -> Box:
  """The fallback box: the whole image, its aspect ratio clamped to CROP_RATIO, centred."""
  box_h, box_w = height, width
  if width / height < CROP_RATIO[0]:
    box_h = min(height, _round(width / CROP_RATIO[0]))
  elif width / height > CROP_RATIO[1]:
    box_w = min(width, _round(height * CROP_RATIO[1]))
  return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """`image` [h, w, c] uint8 resized to [height, width, c] (PIL bilinear; a copy when the
  size is unchanged)."""
  if image.shape[:2] == (height, width):
    return np.array(image)
  if image.shape[2] == 3:  # RGB: one PIL image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.BILINEAR))
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c])).resize(
      (width, height), Image.BILINEAR)) for c in range(image.shape[2])], axis=-1)


def crop_resize(image: np.ndarray, box: Box, size: int) -> np.ndarray:
  """The `box` of `image` resized to `size` x `size`."""
  top, left, box_h, box_w = box
  return resize(image[top:top + box_h, left:left + box_w], size, size)


def train_view(image: np.ndarray, size: int, uniforms: np.ndarray) -> np.ndarray:
  """The random-resized crop of `image` [h, w, c] at `size` x `size`, flipped left-right
  when the last uniform is below 1/2.

  Args:
    image: uint8 [h, w, c].
    size: the side of the view.
    uniforms: UNIFORMS_PER_VIEW uniforms (`example_uniforms`).
  """
  uniforms = np.asarray(uniforms, np.float64).reshape(-1)
  view = crop_resize(image, sample_crop_box(uniforms[:-1], *image.shape[:2]), size)
  return view[:, ::-1] if uniforms[-1] < 0.5 else view


def eval_size(size: int) -> int:
  """The shorter side an evaluation image is resized to before its centre crop (256 for 224)."""
  return _round(size / EVAL_CROP_FRACTION)


def eval_view(image: np.ndarray, size: int) -> np.ndarray:
  """`image` [h, w, c] resized to a shorter side of `eval_size(size)`, then its centre
  `size` x `size` (uint8)."""
  height, width = image.shape[:2]
  short = eval_size(size)
  scale = short / min(height, width)
  new_h, new_w = max(size, _round(height * scale)), max(size, _round(width * scale))
  resized = resize(image, new_h, new_w)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return resized[top:top + size, left:left + size]
