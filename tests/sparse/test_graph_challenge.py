"""The GraphChallenge sparse-DNN inference: the layer's semantics on literal numbers, the
fast RadiX forward against the dense reference, the challenge's networks and inputs."""
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.sparse import graph_challenge as gc
from lotto.topologies import radixnet


def test_layer_adds_the_bias_only_to_nonzeros_then_relu_then_caps_at_32():
  y = np.array([[1.0, 0.0, 2.0, 0.0],
                [0.0, 0.0, 0.0, 0.0]], np.float32)
  w = np.array([[1.0, 0.0, 0.0, 0.1],
                [9.0, 9.0, 9.0, 9.0],  # meets only zero inputs: contributes nothing
                [0.5, 0.0, 20.0, 0.05],
                [0.0, 7.0, 0.0, 0.0]], np.float32)
  mask = w != 0
  # Z = y @ w = [[2, 0, 40, 0.2], [0, 0, 0, 0]]
  up = gc.dense_forward(y, [mask], w[None], 0.5, layers=1)
  np.testing.assert_allclose(up, [[2.5, 0.0, 32.0, 0.7],  # Z = 0 stays 0, not 0.5
                                  [0.0, 0.0, 0.0, 0.0]], rtol=1e-6)
  down = gc.dense_forward(y, [mask], w[None], -0.3, layers=1)
  np.testing.assert_allclose(down, [[1.7, 0.0, 32.0, 0.0],  # 0.2 - 0.3 < 0: ReLU
                                    [0.0, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_two_layers_chain_the_rule():
  y = np.array([[1.0, 1.0]], np.float32)
  mask = np.ones((2, 2), bool)
  w = np.array([[[1.0, 0.0], [1.0, 0.25]],   # layer 0: Z = [2, 0.25] -> [1.5, 0]
                [[30.0, 1.0], [1.0, 1.0]]],  # layer 1: Z = [45, 1.5] -> [32, 1.0]
               np.float32)
  out = gc.dense_forward(y, [mask], w, -0.5, layers=2)
  np.testing.assert_allclose(out, [[32.0, 1.0]], rtol=1e-6)


# Each layout: shifted adds (tile 1) and whole-h blocks ([2, 2, 2] x 16), band tiles of
# 2 x radix ([8, 8]), windows of three tiles (radix 4, tile 2).
@pytest.mark.parametrize("radices, block, tile", [([2, 2, 2], 16, None), ([8, 8], 1, None),
                                                  ([4, 4], 4, 2)])
def test_fast_forward_equals_the_dense_reference(radices, block, tile):
  masks = radixnet([radices], [block] * (len(radices) + 1))
  n, layers = masks[0].shape[0], 2 * len(radices)
  rng = np.random.default_rng(0)
  # Positive weights (no cancellation: Z = 0 exactly where the reference has it), each
  # neuron's inputs summing to about 2.5, so activations neither all die nor all saturate.
  weights = rng.uniform(0.5, 1.5, (layers, n, n)).astype(np.float32) * 2.5 / (
      radices[0] * block)
  biases = rng.uniform(-1.0, -0.05, (layers, n)).astype(np.float32)
  y0 = (rng.random((6, n)) < 0.3).astype(np.float32)
  y0[0] *= 40  # saturates: the cap at 32 applies
  y0[1] = 0  # a dead input stays dead
  net = gc.compress_dnn(masks, weights, biases, layers, tile=tile)
  expected = gc.dense_forward(y0, masks, weights, biases, layers)
  assert 0.05 < (expected != 0).mean() < 0.95 and (expected == 32).any()
  np.testing.assert_allclose(np.asarray(gc.forward(net, y0)), expected, rtol=1e-5, atol=1e-5)
  assert net.connections == layers * n * radices[0] * block


def test_dropping_dead_rows_between_periods_keeps_the_categories():
  masks = radixnet([[4, 4]], [4, 4, 4])
  rng = np.random.default_rng(1)
  y0 = rng.random((40, 64)) < rng.uniform(0.02, 0.4, (40, 1))  # some die early, some late
  net = gc.compress_dnn(masks, 1 / 8, -0.3, layers=8)
  expected = (gc.dense_forward(y0, masks, 1 / 8, -0.3, layers=8) != 0).any(axis=1)
  assert 0 < expected.sum() < 40
  for drop_after in [(), (1, 2, 3)]:
    np.testing.assert_array_equal(gc.categories(net, y0, 16, drop_after), expected)


def test_challenge_network_has_32_connections_per_neuron_and_its_own_constants():
  radices, block = gc.challenge_radices(1024)
  assert (radices, block) == ([2] * 6, 16)
  masks = radixnet([radices], [block] * 7)
  assert all(m.shape == (1024, 1024) and (m.sum(0) == 32).all() and (m.sum(1) == 32).all()
             for m in masks)
  assert gc.challenge_radices(4096) == ([2] * 8, 16) and 120 % 8 == 0
  assert gc.BIASES[1024] == -0.3 and gc.WEIGHT == 1 / 16 and gc.YMAX == 32
  with pytest.raises(ConfigError, match="16 \\* 2\\^k"):
    gc.challenge_radices(1000)


def test_synthetic_inputs_have_the_exact_count_and_repeat_by_seed():
  x = gc.synthetic_inputs(300, 1024, seed=3)
  assert x.shape == (300, 1024) and x.dtype == bool
  assert x.sum() == round(6_374_505 / (60_000 * 1024) * 300 * 1024)
  np.testing.assert_array_equal(x, gc.synthetic_inputs(300, 1024, seed=3))
  assert (x != gc.synthetic_inputs(300, 1024, seed=4)).any()
  assert gc.synthetic_inputs(5, 64, seed=0, nnz=17).sum() == 17


def test_compress_rejects_masks_that_are_not_radix_layers():
  mask = np.random.default_rng(0).random((64, 64)) < 0.1
  with pytest.raises(ConfigError, match="RadiX"):
    gc.compress_dnn([mask])
  masks = radixnet([[8, 8]], [1, 1, 1])
  with pytest.raises(ConfigError, match="periods"):
    gc.compress_dnn(masks, layers=3)
