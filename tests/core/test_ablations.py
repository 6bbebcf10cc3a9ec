"""Mask ablations: exact counts kept, positions moved."""
import jax
import jax.numpy as jnp
import pytest

from lotto.core import ablations
from lotto.core import masks as masks_lib


def test_shuffle_keeps_per_layer_counts_and_moves_positions(lenet):
  _, params, prunable = lenet
  masks = masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable,
                                 {"hidden_0/kernel": 0.1, "hidden_1/kernel": 0.3,
                                  "output/kernel": 0.9})
  shuffled = ablations.shuffle_within_layers(jax.random.PRNGKey(1), masks, prunable)
  assert masks_lib.layer_densities(shuffled, prunable) == masks_lib.layer_densities(masks, prunable)
  assert bool(jnp.any(shuffled["hidden_0"]["kernel"] != masks["hidden_0"]["kernel"]))
  glob = ablations.shuffle_globally(jax.random.PRNGKey(1), masks, prunable)
  assert masks_lib.count(glob, prunable) == masks_lib.count(masks, prunable)
  even = ablations.even_masks(jax.random.PRNGKey(1), masks, prunable)
  d = masks_lib.density(masks, prunable)
  for name, value in masks_lib.layer_densities(even, prunable).items():
    assert value == pytest.approx(d, abs=1e-3), name
