"""The layer-by-layer walk on a convolutional network with BatchNorm: im2col calibration
inputs, exact N:M groups within the input channels of every convolution, SparseGPT's
reconstruction error below magnitude pruning's in every layer, and the pruned network's
output closer to the dense one's."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.core.structure import Structure
from lotto.jobs.oneshot_walk import EvalForward, calibration_chunks, prune_network
from lotto.pruning.oneshot_methods import ONESHOT_METHODS, OneShotSettings


class _ConvBN(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)), name="conv_0")(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn")(x))
    x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), padding="SAME", name="conv_1")(x))
    return nn.Dense(4, name="output")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def network():
  model = _ConvBN()
  x = jax.random.normal(jax.random.PRNGKey(0), (48, 6, 6, 4))
  variables = model.init(jax.random.PRNGKey(1), x)
  # BN statistics that are not the identity, as a trained network's are.
  stats = jax.tree.map(lambda s: s + 0.3, variables["batch_stats"])
  params = variables["params"]
  return model, params, stats, np.asarray(x)


def _prune(network, method, structure):
  model, params, stats, x = network
  prunable = masks_lib.select_prunable(params)
  return prune_network(EvalForward(model), params, stats, prunable, x,
                       ONESHOT_METHODS.get(method), structure.max_density, structure,
                       OneShotSettings(block=16), chunk=20)


def test_convolutions_keep_n_of_every_m_input_channels_and_sparsegpt_reconstructs_best(network):
  structure = Structure("n:m", n=2, m=4)
  model, params, stats, x = network
  pruned = {m: _prune(network, m, structure) for m in ("magnitude", "sparsegpt")}
  for name in ("conv_0", "conv_1"):
    mask = np.asarray(pruned["sparsegpt"].masks[name]["kernel"])  # [3, 3, cin, cout]
    groups = mask.reshape(3, 3, mask.shape[2] // 4, 4, mask.shape[3]).sum(axis=3)
    assert (groups == 2).all(), name
  assert [layer["name"] for layer in pruned["sparsegpt"].layers] == [
      "conv_0/kernel", "conv_1/kernel", "output/kernel"]
  for ours, theirs in zip(pruned["sparsegpt"].layers, pruned["magnitude"].layers):
    assert ours["error"] < theirs["error"], ours["name"]

  def outputs(p):
    return model.apply({"params": p, "batch_stats": stats}, x, train=False)

  dense = outputs(params)
  distance = {m: float(jnp.sum((outputs(n.params) - dense) ** 2)) for m, n in pruned.items()}
  assert distance["sparsegpt"] < distance["magnitude"]


def test_calibration_chunks_pad_the_last_chunk_with_zero_weights():
  chunks, weights = calibration_chunks(np.arange(10.0).reshape(5, 2), 2)
  assert chunks.shape == (3, 2, 2) and weights.tolist() == [[1, 1], [1, 1], [1, 0]]
  assert chunks[2, 1].tolist() == [0.0, 0.0]


def test_a_prunable_leaf_that_no_layer_calls_needs_no_inputs_only_without_calibration(network):
  model, params, stats, x = network
  params = {**params, "extra": {"table": jnp.ones((4, 4))}}
  prunable = masks_lib.select_prunable(params)
  with pytest.raises(ConfigError, match=r"^one-shot pruning: prunable leaf extra/table is not "
                                        r"the kernel of a Dense or Conv layer"):
    prune_network(EvalForward(model), params, stats, prunable, x, ONESHOT_METHODS.get("wanda"),
                  0.5, Structure(), OneShotSettings())
  magnitude = prune_network(EvalForward(model), params, stats, prunable, None,
                            ONESHOT_METHODS.get("magnitude"), 0.5, Structure(),
                            OneShotSettings())
  assert float(np.mean(magnitude.masks["extra"]["table"])) == 0.5
