"""Constant fan-in masks: exactly k = max(1, round(d * fan_in)) inputs per output unit (Dense
columns, conv output channels), uniformly random subsets, and the one-line error for a mask
that is not constant fan-in."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import fanin
from lotto.core import masks as masks_lib
from lotto.core.distributions import layer_distribution
from lotto.core.errors import ConfigError

PARAMS = {"conv": {"kernel": jnp.zeros((3, 3, 4, 8)), "bias": jnp.zeros(8)},
          "dense": {"kernel": jnp.zeros((30, 20)), "bias": jnp.zeros(20)},
          "output": {"kernel": jnp.zeros((20, 3))}}
PRUNABLE = masks_lib.select_prunable(PARAMS)


@pytest.mark.parametrize("density, fan_in, k", [
    (0.1, 30, 3), (0.25, 36, 9), (1.0, 20, 20),
    (0.01, 30, 1),    # round(0.3) = 0, lifted to 1
    (0.25, 10, 2),    # round(2.5): Python rounds halves to even
    (0.35, 10, 4),    # round(3.5) = 4
    (0.01, 784, 8),   # round(7.84)
    (0.01, 4096, 41),  # round(40.96)
])
def test_fan_in_count(density, fan_in, k):
  assert fanin.fan_in_count(density, fan_in) == k


def test_every_output_unit_keeps_exactly_k_inputs():
  masks = fanin.fanin_masks(jax.random.PRNGKey(0), PARAMS, PRUNABLE, 0.25)
  conv = np.asarray(masks["conv"]["kernel"])
  # conv: fan-in 3 * 3 * 4 = 36, k = 9 per output channel, over kh * kw * cin together.
  assert conv.shape == (3, 3, 4, 8)
  np.testing.assert_array_equal(conv.reshape(36, 8).sum(axis=0), [9] * 8)
  # dense: fan-in 30, k = round(7.5) = 8 per column; output: fan-in 20, k = 5.
  np.testing.assert_array_equal(np.asarray(masks["dense"]["kernel"]).sum(axis=0), [8] * 20)
  np.testing.assert_array_equal(np.asarray(masks["output"]["kernel"]).sum(axis=0), [5] * 3)
  assert bool(masks["conv"]["bias"].all()) and bool(masks["dense"]["bias"].all())
  assert fanin.constant_fan_in(masks["conv"]["kernel"], "conv/kernel") == 9
  # The per-unit subsets differ (not one pattern repeated over the columns).
  assert len({tuple(np.flatnonzero(c)) for c in np.asarray(masks["dense"]["kernel"]).T}) > 10


def test_per_layer_densities_and_fanin_densities_round_trip():
  shapes = {"conv/kernel": (3, 3, 4, 8), "dense/kernel": (30, 20), "output/kernel": (20, 3)}
  achieved = fanin.fanin_densities(0.1, shapes)
  # k = round(3.6) = 4 of 36; round(3.0) = 3 of 30; round(2.0) = 2 of 20.
  assert achieved == {"conv/kernel": 4 / 36, "dense/kernel": 3 / 30, "output/kernel": 2 / 20}
  masks = fanin.fanin_masks(jax.random.PRNGKey(1), PARAMS, PRUNABLE, achieved)
  assert masks_lib.layer_densities(masks, PRUNABLE) == pytest.approx(achieved, abs=0)
  # ERK densities, constant fan-in inside each layer (SRigL's setting).
  erk = layer_distribution("erk", 0.2, shapes)
  masks = fanin.fanin_masks(jax.random.PRNGKey(1), PARAMS, PRUNABLE, erk)
  for name, shape in shapes.items():
    mask = masks[name.split("/")[0]]["kernel"]
    k = max(1, round(erk[name] * np.prod(shape[:-1])))
    np.testing.assert_array_equal(fanin.fan_in_counts(mask), k)


def test_inputs_are_chosen_uniformly_and_depend_on_the_key():
  # 4000 columns choose k = 3 of 10 inputs: each input is kept 1200 times in expectation,
  # standard deviation sqrt(4000 * 0.3 * 0.7) = 29; 5 sigma = 145.
  mask = np.asarray(fanin.fanin_mask(jax.random.PRNGKey(0), (10, 4000), 3))
  np.testing.assert_array_equal(mask.sum(axis=0), 3)
  assert np.abs(mask.sum(axis=1) - 1200).max() < 145
  other = np.asarray(fanin.fanin_mask(jax.random.PRNGKey(1), (10, 4000), 3))
  assert (mask != other).any()
  np.testing.assert_array_equal(
      mask, np.asarray(fanin.fanin_mask(jax.random.PRNGKey(0), (10, 4000), 3)))


def test_errors():
  with pytest.raises(ConfigError, match="no density given"):
    fanin.fanin_masks(jax.random.PRNGKey(0), PARAMS, PRUNABLE, {"conv/kernel": 0.5})
  with pytest.raises(ConfigError, match=r"\(0, 1\]"):
    fanin.fanin_masks(jax.random.PRNGKey(0), PARAMS, PRUNABLE, 0.0)
  with pytest.raises(ConfigError, match="k=11"):
    fanin.fanin_mask(jax.random.PRNGKey(0), (10, 4), 11)
  with pytest.raises(ConfigError, match="rank >= 2"):
    fanin.fan_in_of((5,))


def test_a_mask_that_is_not_constant_fan_in_is_one_line_naming_the_range():
  mask = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], bool)  # columns keep 2, 1, 1
  with pytest.raises(ConfigError) as error:
    fanin.constant_fan_in(mask, "hidden_0/kernel")
  message = str(error.value)
  assert "\n" not in message
  assert "hidden_0/kernel" in message and "1 to 2 inputs" in message
  assert "distribution=fanin" in message
  # An unstructured random mask at 10 % of 30 x 20 is (almost surely) not constant fan-in.
  random = masks_lib.random_masks(jax.random.PRNGKey(0), PARAMS, PRUNABLE, 0.1)
  with pytest.raises(ConfigError, match="not constant fan-in"):
    fanin.constant_fan_in(random["dense"]["kernel"], "dense/kernel")
