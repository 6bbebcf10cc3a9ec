"""A compressed MLP computes the masked dense model's logits (Flax `apply` on params * mask)."""
import numpy as np
import pytest

from lotto import sparse
from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.models import create_model
from lotto.topologies import fitted_radixnet


WIDTHS = (40, 32, 32, 10)  # the test config's MLP on MNIST-1D


def _layer_masks(hidden, output=None):
  out = output if output is not None else np.ones(WIDTHS[-2:], bool)
  layers = [*hidden, out]
  names = [f"hidden_{i}" for i in range(len(hidden))] + ["output"]
  return {n: {"kernel": m, "bias": np.ones(m.shape[1], bool)} for n, m in zip(names, layers)}


@pytest.fixture(scope="module")
def mlp():
  """The test config's MLP with random params (kaiming scale, random biases) and exactly
  10 % of each hidden kernel kept; the output layer unpruned."""
  model = create_model("mlp", 10, widths=WIDTHS[1:-1])
  rng = np.random.default_rng(0)
  params, hidden = {}, []
  for i, (fan_in, fan_out) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:])):
    name = "output" if i == len(WIDTHS) - 2 else f"hidden_{i}"
    params[name] = {"kernel": rng.normal(size=(fan_in, fan_out)).astype(np.float32) *
                              np.sqrt(2 / fan_in),
                    "bias": rng.uniform(-0.2, 0.2, fan_out).astype(np.float32)}
    if name != "output":
      flat = np.zeros(fan_in * fan_out, bool)
      flat[rng.permutation(flat.size)[:round(0.1 * flat.size)]] = True
      hidden.append(flat.reshape(fan_in, fan_out))
  x = rng.normal(size=(6, 4, 10)).astype(np.float32)  # flattened to 40 as the model does
  return model, params, _layer_masks(hidden), x


def _dense_logits(model, params, masks, x):
  return np.asarray(model.apply({"params": masks_lib.apply(params, masks)}, x))


@pytest.mark.parametrize("kernel", ["auto", "bcoo", "gather", "nm"])
def test_compressed_mlp_equals_the_masked_dense_model(mlp, kernel):
  model, params, masks, x = mlp
  # The unpruned output layer has no N:M structure: "nm" runs the hidden layers only.
  choice = {"hidden_0": "nm", "hidden_1": "nm"} if kernel == "nm" else kernel
  compressed = sparse.compress_mlp(params, masks, choice)
  np.testing.assert_allclose(np.asarray(compressed(x)), _dense_logits(model, params, masks, x),
                             atol=1e-5)
  if kernel == "auto":  # 10 % random hidden layers: gather; the unpruned output: dense
    assert compressed.kernels == {"hidden_0": "gather", "hidden_1": "gather", "output": "dense"}


def test_radix_mlp_runs_its_hidden_layers_as_shifts(mlp):
  model, params, _, x = mlp
  masks = _layer_masks(fitted_radixnet(WIDTHS[:-1]))  # 40 of 64 input rows, 12.5 % and 25 %
  compressed = sparse.compress_mlp(params, masks)
  assert compressed.kernels == {"hidden_0": "radix", "hidden_1": "radix", "output": "dense"}
  np.testing.assert_allclose(np.asarray(compressed(x)), _dense_logits(model, params, masks, x),
                             atol=1e-5)


def test_a_kernel_map_chooses_per_layer(mlp):
  model, params, masks, x = mlp
  compressed = sparse.compress_mlp(params, masks, {"hidden_0": "bcoo", "output": "gather"})
  assert compressed.kernels == {"hidden_0": "bcoo", "hidden_1": "gather", "output": "gather"}
  np.testing.assert_allclose(np.asarray(compressed(x)), _dense_logits(model, params, masks, x),
                             atol=1e-5)
  with pytest.raises(ConfigError, match=r"kernel map names layers \['hidden_9'\]"):
    sparse.compress_mlp(params, masks, {"hidden_9": "bcoo"})


def test_errors_name_the_layer_and_what_is_supported(mlp):
  _, params, masks, x = mlp
  with pytest.raises(ConfigError, match="layer hidden_0: the 40x32 mask is not a RadiX-Net"):
    sparse.compress_mlp(params, masks, "radix")
  with pytest.raises(ConfigError, match="unknown sparse kernel 'csr'; valid choices: auto, "):
    sparse.compress_mlp(params, masks, "csr")
  conv = {"conv_0": {"kernel": np.zeros((3, 3, 1, 4)), "bias": np.zeros(4)},
          "output": {"kernel": np.zeros((4, 10)), "bias": np.zeros(10)}}
  with pytest.raises(ConfigError, match=r"supports Dense layers named hidden_<i> and output.*"
                                        r"this model has layers \['conv_0', 'output'\]"):
    sparse.compress_mlp(conv, conv)
  with pytest.raises(ConfigError, match=r"takes inputs .* with 40 features each; got shape"):
    sparse.compress_mlp(params, masks, "gather")(x.reshape(6, 40)[:, :20])
