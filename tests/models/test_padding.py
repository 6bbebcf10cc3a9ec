"""Convolutions pad as the references' PyTorch layers do (`padding=(k - 1) // 2`: 1 on each
side of a 3x3 kernel, none for a 1x1), strided ones included.

Flax's "SAME" pads a stride-2 3x3 convolution of an even-sized input 0 before and 1 after;
open_lth's and Synaptic-Flow's ResNets (PyTorch `padding=1`) pad 1 on each side, and their
logits on the same weights differed by up to 10 before lotto's ResNets padded the same way.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lotto.models import MODELS, create_model
from lotto.models.resnet import BasicBlock, ResNet

NHWC = ("NHWC", "HWIO", "NHWC")
CIFAR = (32, 32, 3)


def _intermediates(model, variables, x):
  """Every module's output (Flax's captured intermediates), eval mode, jitted."""
  def apply(variables, x):
    return model.apply(variables, x, train=False, capture_intermediates=True,
                       mutable=["intermediates"])[1]["intermediates"]
  return jax.jit(apply)(variables, x)


def test_a_strided_block_on_a_written_out_input():
  # One 4x4 channel, kernels of ones: each output is the sum of the input under its window.
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)  # rows 0-3, 4-7, 8-11, 12-15
  block = BasicBlock(features=1, strides=2, init_scheme="torch")
  variables = block.init(jax.random.PRNGKey(0), x, train=False)
  params = jax.tree.map(jnp.ones_like, variables["params"])
  seen = _intermediates(block, {**variables, "params": params}, x)
  # Padded by 1 on each side, the windows centred on rows/columns 0 and 2: the top-left one
  # covers x[0:2, 0:2] = 0+1+4+5, the bottom-right x[1:4, 1:4] = 5+6+7+9+10+11+13+14+15.
  # ("SAME" would pad 0 before and 1 after: top-left x[0:3, 0:3] = 45.)
  np.testing.assert_array_equal(np.asarray(seen["conv_0"]["__call__"][0])[0, :, :, 0],
                                [[10.0, 24.0], [51.0, 90.0]])
  # The 1x1 projection pads nothing (PyTorch padding=0): it samples x[0::2, 0::2].
  np.testing.assert_array_equal(np.asarray(seen["shortcut_conv"]["__call__"][0])[0, :, :, 0],
                                [[0.0, 2.0], [8.0, 10.0]])


def test_resnet_strided_convolutions_equal_symmetric_padding():
  # ResNet-20's class and stride pattern at a quarter of its widths, one block per stage
  # (resnet20/32/56/18 differ only in widths and depth: same code path, slower to build).
  model = ResNet((4, 8), 1, 10)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, *CIFAR))
  variables = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.PRNGKey(0))
  params = variables["params"]
  seen = _intermediates(model, variables, x)
  inputs = seen["stage0_block0"]["__call__"][0]  # what stage 1's first block gets
  assert inputs.shape == (2, 32, 32, 4)
  block = params["stage1_block0"]
  for layer, pads in (("conv_0", ((1, 1), (1, 1))), ("shortcut_conv", ((0, 0), (0, 0)))):
    reference = lax.conv_general_dilated(inputs, block[layer]["kernel"], (2, 2), pads,
                                         dimension_numbers=NHWC)
    mine = seen["stage1_block0"][layer]["__call__"][0]
    assert mine.shape == reference.shape == (2, 16, 16, block[layer]["kernel"].shape[-1])
    np.testing.assert_allclose(np.asarray(mine), np.asarray(reference), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, sizes, blocks", [
    ("resnet20", (32, 16, 8), (3, 3, 3)), ("resnet18", (32, 16, 8, 4), (2, 2, 2, 2)),
    # The ImageNet stem divides by 4 (7x7/2 convolution, 3x3/2 max pool).
    ("resnet18_imagenet", (8, 4, 2, 1), (2, 2, 2, 2)), ("resnet50", (8, 4, 2, 1), (3, 4, 6, 3))])
def test_resnet_stage_sizes_halve(name, sizes, blocks):
  model = create_model(name, 10)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *CIFAR))))
  shapes = jax.eval_shape(lambda v: _intermediates(model, v, jnp.zeros((1, *CIFAR))), variables)
  for stage, (size, count) in enumerate(zip(sizes, blocks)):
    out = shapes[f"stage{stage}_block{count - 1}"]["__call__"][0]
    assert out.shape[1:3] == (size, size)
    assert f"stage{stage}_block{count}" not in shapes
  assert shapes["__call__"][0].shape == (1, 10)


def _convolutions(jaxpr):
  """Every conv_general_dilated in `jaxpr`, inside custom-gradient and jit calls too."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "conv_general_dilated":
      yield eqn
    for value in eqn.params.values():
      for inner in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(inner, "jaxpr", inner)
        if hasattr(inner, "eqns"):
          yield from _convolutions(inner)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_strided_convolution_pads_as_pytorch(name):
  shape = {"lenet5": (28, 28, 1), "mlp": (40,), "gpt": (128,)}.get(name, CIFAR)
  model = create_model(name, 10)
  x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, x).jaxpr
  strided = 0
  for eqn in _convolutions(jaxpr):
    if tuple(eqn.params["window_strides"]) == (1, 1):
      continue
    strided += 1
    kernel = eqn.invars[1].aval.shape[:2]  # HWIO
    assert tuple(map(tuple, eqn.params["padding"])) == tuple(((k - 1) // 2,) * 2 for k in kernel)
  # ResNet-20: 2 strided blocks (3x3 + 1x1 each); ResNet-18: 3; the others stride by pooling.
  # The ImageNet ResNets: the 7x7 stem and 3 strided blocks (ResNet-50 strides its 3x3).
  assert strided == {"resnet20": 4, "resnet32": 4, "resnet56": 4, "resnet18": 6,
                     "resnet18_imagenet": 7, "resnet50": 7}.get(name, 0)
