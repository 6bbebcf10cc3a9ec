"""Dense/Conv/BatchNorm builders with selectable initialisation schemes.

Three schemes:
  * "torch": open_lth's (PyTorch layers with kaiming-normal weights):
    kernels ~ N(0, 2/fan_in) (kaiming-normal, fan-in, *not* truncated),
    biases ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)) (PyTorch's default).
  * "kaiming": the same kernels with zero biases, as Synaptic-Flow's
    lottery_vgg / lottery_resnet initialise them. SynFlow's conservation (every
    layer's scores sum to R) needs zero biases: |bias| > 0 injects flow
    downstream of the pruned layers (BUILD_NOTES.md, layer collapse).
  * "flax": Flax defaults (lecun-normal kernels, zero biases).
Bias initialisation needs the fan-in, which Flax's bias_init does not receive,
so these helpers compute it from the input and pass a closed-over initializer.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.models.conv_grad import conv_general_dilated

INIT_SCHEMES = ("torch", "kaiming", "flax")

# PyTorch's BN momentum 0.1 corresponds to Flax momentum 0.9.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _check_scheme(init: str) -> None:
  if init not in INIT_SCHEMES:
    raise ConfigError(f"unknown model init {init!r}; valid choices: {', '.join(INIT_SCHEMES)}")


def _uniform_bias(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _inits(init: str, fan_in: int):
  _check_scheme(init)
  if init == "torch":
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal"), _uniform_bias(fan_in)
  if init == "kaiming":
    return nn.initializers.variance_scaling(2.0, "fan_in", "normal"), nn.initializers.zeros_init()
  return nn.initializers.lecun_normal(), nn.initializers.zeros_init()


def dense(x: jax.Array, features: int, init: str, name: str, use_bias: bool = True) -> jax.Array:
  """A Dense layer named `name`, initialised by `init` scheme."""
  kernel_init, bias_init = _inits(init, x.shape[-1])
  return nn.Dense(features, use_bias=use_bias, kernel_init=kernel_init,
                  bias_init=bias_init, name=name)(x)


def conv(x: jax.Array, features: int, kernel_size: Sequence[int], init: str, name: str,
         strides: int = 1, padding: str | Sequence = "SAME", use_bias: bool = True) -> jax.Array:
  """A 2D convolution (NHWC) named `name`, initialised by `init` scheme; its gradients
  are written in XLA:CPU's fast form (`conv_grad`), so it trains as fast in loops.

  `padding` is "SAME", "VALID" or explicit ((top, bottom), (left, right)) pairs. "SAME" pads
  an odd kernel symmetrically only at stride 1; a strided convolution whose reference is
  PyTorch's `padding=p` must pass ((p, p), (p, p)) (resnet.py does)."""
  fan_in = x.shape[-1] * math.prod(kernel_size)
  kernel_init, bias_init = _inits(init, fan_in)
  return nn.Conv(features, tuple(kernel_size), strides=(strides, strides), padding=padding,
                 use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init,
                 conv_general_dilated=conv_general_dilated, name=name)(x)


def batch_norm(x: jax.Array, train: bool, name: str) -> jax.Array:
  """BatchNorm with PyTorch-equivalent momentum/epsilon; batch stats in training."""
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON, name=name)(x)
