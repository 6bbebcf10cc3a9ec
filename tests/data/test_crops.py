"""ImageNet's host crops: the crop box sampler, the training and evaluation views, and the
(seed, step, example) keying of their randomness."""
import math

import numpy as np
import pytest

from lotto.data import crops


def _image(height, width, channels=3):
  """A uint8 image whose every pixel is distinct (row, column and channel readable)."""
  values = np.arange(height * width * channels).reshape(height, width, channels)
  return (values % 251).astype(np.uint8)


def _uniforms_for(area_fraction, top_u, left_u, flip_u, ratio_u=0.5):
  """Uniforms whose first crop attempt asks for `area_fraction` at aspect ratio 1."""
  u = np.zeros(crops.UNIFORMS_PER_VIEW)
  u[0] = (area_fraction - 0.08) / 0.92
  u[1], u[2], u[3], u[-1] = ratio_u, top_u, left_u, flip_u
  return u


def test_a_fixed_crop_box_gives_the_pixels_of_that_box():
  image = _image(8, 8)
  # Area 16 of 64 at ratio 1: a 4x4 box; top floor(0.45 * 5) = 2, left floor(0.85 * 5) = 4.
  u = _uniforms_for(0.25, 0.45, 0.85, flip_u=0.7)
  assert crops.sample_crop_box(u[:-1], 8, 8) == (2, 4, 4, 4)
  np.testing.assert_array_equal(crops.train_view(image, 4, u), image[2:6, 4:8])
  flipped = crops.train_view(image, 4, _uniforms_for(0.25, 0.45, 0.85, flip_u=0.2))
  np.testing.assert_array_equal(flipped, image[2:6, 4:8][:, ::-1])
  np.testing.assert_array_equal(flipped[:, 0], image[2:6, 7])


def test_a_box_resized_keeps_a_constant_image_constant_and_takes_the_view_size():
  image = np.full((30, 50, 3), (10, 200, 77), np.uint8)
  view = crops.train_view(image, 7, crops.example_uniforms(0, 0, 0))
  assert view.shape == (7, 7, 3) and view.dtype == np.uint8
  assert (view == np.array([10, 200, 77], np.uint8)).all()


def test_no_fitting_attempt_falls_back_to_the_clamped_centre_box():
  # Area fraction 1 at aspect ratio 4/3 never fits an image narrower than that.
  never = np.tile([1.0 - 2**-53, 1.0 - 2**-53, 0.0, 0.0], crops.CROP_ATTEMPTS)
  # Wide 100x300: height 100, width round(100 * 4/3) = 133, left (300 - 133) // 2 = 83.
  assert crops.sample_crop_box(never, 100, 300) == (0, 83, 100, 133)
  # Tall 300x100: width 100, height round(100 / (3/4)) = 133, top 83.
  assert crops.sample_crop_box(never, 300, 100) == (83, 0, 133, 100)
  # Within [3/4, 4/3] the whole image.
  assert crops.sample_crop_box(never, 90, 100) == (0, 0, 90, 100)


def test_crop_box_statistics_over_many_draws():
  height, width = 400, 500
  boxes = np.array([crops.sample_crop_box(crops.example_uniforms(1, step, 7)[:-1], height,
                                          width) for step in range(3000)])
  top, left, box_h, box_w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + box_h <= height).all() and (left + box_w <= width).all()
  fraction, aspect = box_h * box_w / (height * width), box_w / box_h
  # Each side is rounded to whole pixels (at most half a pixel of a side >= 0.08^0.5 * 400 *
  # (3/4)^0.5 = 98 px): 1 % of slack on the bounds.
  assert fraction.min() >= 0.08 * 0.99 and fraction.max() <= 1.0
  assert aspect.min() >= 0.75 * 0.99 and aspect.max() <= 4 / 3 * 1.01
  # The draws span the ranges: small and large boxes, tall and wide ones.
  assert fraction.min() < 0.1 and fraction.max() > 0.9
  assert aspect.min() < 0.78 and aspect.max() > 1.28
  # log(aspect) is uniform over a range symmetric about 0 among accepted boxes
  # (a 4:5 image accepts slightly more tall boxes): its mean is near 0.
  assert abs(np.log(aspect).mean()) < 0.03
  # The fraction of fallbacks is small for a 4:5 image: every attempt would have to fail.
  assert np.mean((box_h == height) & (box_w == width)) < 0.01


def test_the_flip_is_a_fair_coin():
  image = _image(6, 6)
  flips = 0
  for example in range(2000):
    u = crops.example_uniforms(3, 11, example)
    flips += u[-1] < 0.5
    if example < 20:  # the view is the unflipped crop, mirrored, exactly when u < 1/2
      box = crops.sample_crop_box(u[:-1], 6, 6)
      plain = crops.crop_resize(image, box, 4)
      expected = plain[:, ::-1] if u[-1] < 0.5 else plain
      np.testing.assert_array_equal(crops.train_view(image, 4, u), expected)
  assert abs(flips - 1000) < 4 * math.sqrt(2000 * 0.25)


def test_eval_view_is_the_centre_crop_of_the_shorter_side_resized():
  assert crops.eval_size(224) == 256 and crops.eval_size(7) == 8
  image = _image(8, 12)  # shorter side already eval_size(7) = 8: no resize
  # top (8 - 7) // 2 = 0, left (12 - 7) // 2 = 2.
  np.testing.assert_array_equal(crops.eval_view(image, 7), image[0:7, 2:9])
  tall = _image(13, 8)  # top (13 - 7) // 2 = 3, left 0
  np.testing.assert_array_equal(crops.eval_view(tall, 7), tall[3:10, 0:7])
  big = np.full((375, 500, 3), 9, np.uint8)  # resized to 256 x 341, then 224 x 224
  view = crops.eval_view(big, 224)
  assert view.shape == (224, 224, 3) and (view == 9).all()


def test_eval_view_of_a_resized_image_crops_the_resized_centre():
  image = _image(16, 24)
  resized = crops.resize(image, 8, 12)  # shorter side 16 -> eval_size(7) = 8
  np.testing.assert_array_equal(crops.eval_view(image, 7), resized[0:7, 2:9])


def test_randomness_is_a_function_of_seed_step_and_example():
  same = crops.example_uniforms(5, 100, 42)
  np.testing.assert_array_equal(same, crops.example_uniforms(5, 100, 42))
  assert same.shape == (crops.UNIFORMS_PER_VIEW,) and (same >= 0).all() and (same < 1).all()
  for other in ((5, 101, 42), (6, 100, 42), (5, 100, 43)):
    assert not np.array_equal(same, crops.example_uniforms(*other))
  image = _image(40, 30)
  view = crops.train_view(image, 16, same)
  np.testing.assert_array_equal(view, crops.train_view(image, 16, crops.example_uniforms(5, 100,
                                                                                        42)))
  others = [crops.train_view(image, 16, crops.example_uniforms(5, step, 42))
            for step in range(101, 106)]
  assert not all(np.array_equal(view, o) for o in others)


@pytest.mark.parametrize("channels", [1, 3])
def test_resize_keeps_channels(channels):
  image = _image(10, 14, channels)
  assert crops.resize(image, 5, 7).shape == (5, 7, channels)
  np.testing.assert_array_equal(crops.resize(image, 10, 14), image)
