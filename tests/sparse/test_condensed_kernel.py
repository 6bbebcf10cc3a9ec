"""The "condensed" inference kernel and a condensed training state as a compressed MLP."""
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto import sparse
from lotto.core.errors import ConfigError
from lotto.core.fanin import fanin_mask


def _layer(key, fan_in, out, k):
  mask = np.asarray(fanin_mask(key, (fan_in, out), k))
  weights = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (fan_in, out)))
  return weights * mask, mask


@pytest.mark.parametrize("fan_in, out, k, batch", [(7, 5, 1, 3), (12, 9, 4, 1), (10, 3, 10, 4)])
def test_condensed_kernel_equals_the_masked_product(fan_in, out, k, batch):
  weights, mask = _layer(jax.random.PRNGKey(fan_in), fan_in, out, k)
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(99), (batch, fan_in)))
  layer = sparse.compress_layer(weights, mask, "condensed")
  assert sparse.KERNELS.get("condensed").layer_type is type(layer)
  assert (layer.in_features, layer.out_features, layer.nnz) == (fan_in, out, out * k)
  np.testing.assert_allclose(np.asarray(sparse.matmul(layer, jnp.asarray(x))),
                             x @ (weights * mask), rtol=1e-5, atol=1e-5)


def test_condensed_kernel_refuses_a_mask_without_constant_fan_in():
  mask = np.eye(4, dtype=bool)
  mask[0, 1] = True  # unit 1 keeps 2 inputs, the others 1
  with pytest.raises(ConfigError, match="keep 1 to 2 inputs"):
    sparse.compress_layer(np.ones((4, 4)), mask, "condensed")


def test_a_condensed_state_exports_its_layers_as_they_are_and_predicts_the_masked_model():
  key = jax.random.PRNGKey(0)
  w0, m0 = _layer(key, 6, 5, 2)
  w1 = np.asarray(jax.random.normal(jax.random.fold_in(key, 7), (5, 3)))  # a dense output
  b0, b1 = np.arange(5, dtype=np.float32) / 10, np.ones(3, np.float32)
  condensed = sparse.condense(w0, m0)
  params = {"hidden_0": {"values": condensed.values, "bias": b0},
            "output": {"kernel": w1, "bias": b1}}
  wiring = {"hidden_0": {"indices": condensed.indices,
                         "fanout": sparse.fanout_table(condensed.indices, 6)}, "output": {}}
  assert sparse.is_condensed(params)
  model = sparse.condensed_mlp(params, wiring)
  assert model.kernels == {"hidden_0": "condensed", "output": "dense"}
  np.testing.assert_array_equal(np.asarray(model.layers[0].indices), np.asarray(condensed.indices))
  x = np.asarray(jax.random.normal(jax.random.fold_in(key, 3), (4, 6)))
  expected = np.maximum(x @ (w0 * m0) + b0, 0) @ w1 + b1   # the masked dense model
  np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-5)
  buffer = io.BytesIO()
  sparse.save_compressed(buffer, model)
  buffer.seek(0)
  loaded = sparse.load_compressed(buffer)
  assert loaded.kernels == model.kernels
  np.testing.assert_allclose(np.asarray(loaded(x)), expected, rtol=1e-5, atol=1e-5)
