"""Effective density: weights on dead paths count as pruned."""
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import connectivity
from lotto.core import masks as masks_lib


def test_effective_density_counts_dead_paths():
  masks = {"hidden_0": {"kernel": jnp.array(np.array([[1, 0, 1, 1]] * 3, bool))},
           "output": {"kernel": jnp.ones((4, 2), bool)}}
  prunable = {"hidden_0": {"kernel": True}, "output": {"kernel": True}}
  assert masks_lib.density(masks, prunable) == pytest.approx(17 / 20)
  # hidden unit 1 has no inputs: its 2 outgoing weights are effectively pruned
  assert connectivity.effective_density(masks, prunable) == pytest.approx(15 / 20)


def test_effective_density_on_a_conv_chain_with_flatten():
  # conv_0: 1 -> 2 channels; output channel 1 has no surviving weight, so
  # conv_1's input channel 1 (9 weights per output channel) is dead too, and
  # the dense layer's features from conv_1's dead channel 0 (HWC flatten,
  # channel fastest) are dead.
  conv0 = np.ones((3, 3, 1, 2), bool)
  conv0[..., 1] = False
  conv1 = np.ones((3, 3, 2, 2), bool)
  conv1[..., 0] = False  # conv_1 output channel 0 pruned entirely
  dense = np.ones((4 * 2, 3), bool)  # 2x2 spatial x 2 channels, flattened
  masks = {"conv_0": {"kernel": jnp.asarray(conv0)}, "conv_1": {"kernel": jnp.asarray(conv1)},
           "output": {"kernel": jnp.asarray(dense)}}
  prunable = {k: {"kernel": True} for k in masks}
  total = conv0.size + conv1.size + dense.size
  alive = conv0.sum() + conv1.sum() + dense.sum()
  assert masks_lib.density(masks, prunable) == pytest.approx(alive / total)
  dead = 9 * 1 + 4 * 3  # conv_1 weights from dead input channel 1 to live output 1; dense rows
  assert connectivity.effective_density(masks, prunable) == pytest.approx((alive - dead) / total)


def test_layers_nested_in_blocks_have_no_effective_density():
  # A transformer block whose projections chain by width (8 -> 8 -> 8 -> 8): without the
  # residual stream and attention the chain would be read as a plain MLP.
  masks = {"block_0": {"attention": {n: {"kernel": jnp.ones((8, 8), bool)}
                                     for n in ("query", "key", "value", "out")}}}
  prunable = {"block_0": {"attention": {n: {"kernel": True} for n in masks["block_0"]
                                        ["attention"]}}}
  assert connectivity.effective_density(masks, prunable) is None
  flat = {"hidden_0": {"kernel": jnp.ones((8, 8), bool)}, "output": {"kernel": jnp.ones((8, 2), bool)}}
  assert connectivity.effective_density(flat, {k: {"kernel": True} for k in flat}) == 1.0
