"""The inputs each kernel sees, captured by method interception: a Dense layer's rows are its
inputs with every leading axis a sample; a convolution's are its im2col patches in the
kernel's (kh, kw, cin) order, so patches @ kernel is the convolution (without bias)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.models import create_model, init_variables
from lotto.models.layer_inputs import call_order, layer_inputs


class _Convs(nn.Module):
  """Convolutions with every padding form, a stride and a dilation, then a Dense head."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3), padding="SAME", name="same")(x))
    x = nn.relu(nn.Conv(6, (3, 2), strides=(2, 2), padding=((1, 0), (2, 1)), name="strided")(x))
    x = nn.relu(nn.Conv(4, (2, 2), padding="VALID", kernel_dilation=(2, 1), name="dilated")(x))
    return nn.Dense(3, name="head")(x.reshape(x.shape[0], -1))


def _forward(model):
  return lambda variables, x: model.apply(variables, x, train=False)


def _intermediate(model, variables, x, name):
  """The output of submodule `name` (Flax's own capture, for reference)."""
  _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  return state["intermediates"][name]["__call__"][0]


def test_conv_patches_times_the_kernel_is_the_convolution():
  model = _Convs()
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 7, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  params = variables["params"]
  for name in ("same", "strided", "dilated"):
    rows = layer_inputs(_forward(model), variables, x, f"{name}/kernel")
    kernel = params[name]["kernel"]
    out = _intermediate(model, variables, x, name)
    assert rows.shape == (out.shape[0] * out.shape[1] * out.shape[2], np.prod(kernel.shape[:-1]))
    product = rows @ kernel.reshape(-1, kernel.shape[-1]) + params[name]["bias"]
    np.testing.assert_allclose(product, out.reshape(-1, out.shape[-1]), rtol=1e-5, atol=1e-5)


def test_dense_rows_are_every_token_and_the_call_order_is_the_forward_pass():
  model = create_model("gpt", 11, layers=1, heads=2, width=8, context=5)
  tokens = jnp.arange(10).reshape(2, 5) % 11
  params, _ = init_variables(model, jax.random.PRNGKey(0), (5,))
  variables = {"params": params}
  order = call_order(_forward(model), variables, tokens)
  block = "block_0/"
  assert order == [f"{block}attention/query/kernel", f"{block}attention/key/kernel",
                   f"{block}attention/value/kernel", f"{block}attention/out/kernel",
                   f"{block}mlp/fc_in/kernel", f"{block}mlp/fc_out/kernel", "output/kernel"]
  rows = layer_inputs(_forward(model), variables, tokens, f"{block}mlp/fc_out/kernel")
  assert rows.shape == (10, 32)  # 2 sequences x 5 tokens, 4 x width inputs


def test_an_unknown_layer_is_one_line():
  model = _Convs()
  x = jnp.ones((1, 9, 7, 3))
  variables = model.init(jax.random.PRNGKey(0), x)
  with pytest.raises(ConfigError, match=r"^one-shot pruning: nope/kernel is not the kernel of a "
                                        r"Dense or Conv layer"):
    layer_inputs(_forward(model), variables, x, "nope/kernel")
