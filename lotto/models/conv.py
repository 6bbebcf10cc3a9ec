"""Small convolutional networks: LeNet-5 and Conv-2/4/6 (Frankle & Carbin 2019)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from lotto.models.layers import conv, dense


class LeNet5(nn.Module):
  """LeNet-5: conv6(5x5, same) - pool - conv16(5x5, valid) - pool - 120 - 84 - out."""
  num_classes: int
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = nn.relu(conv(x, 6, (5, 5), self.init_scheme, name="conv_0"))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(conv(x, 16, (5, 5), self.init_scheme, name="conv_1", padding="VALID"))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(x, 120, self.init_scheme, name="fc_0"))
    x = nn.relu(dense(x, 84, self.init_scheme, name="fc_1"))
    return dense(x, self.num_classes, self.init_scheme, name="output")


class ConvNet(nn.Module):
  """Conv-2/4/6: pairs of 3x3 convs (64, 128, 256) each followed by max-pool,
  then fully connected 256-256 and the output layer."""
  channels: Sequence[int]
  num_classes: int
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    for i, features in enumerate(self.channels):
      x = nn.relu(conv(x, features, (3, 3), self.init_scheme, name=f"conv_{i}"))
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(dense(x, 256, self.init_scheme, name="fc_0"))
    x = nn.relu(dense(x, 256, self.init_scheme, name="fc_1"))
    return dense(x, self.num_classes, self.init_scheme, name="output")
