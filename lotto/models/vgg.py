"""CIFAR VGG-11/16/19 (open_lth layout: conv features, one linear output layer)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from lotto.models.layers import batch_norm, conv, dense

# Integers are conv widths, "M" a 2x2 max-pool.
VGG_LAYOUTS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
  """VGG for 32x32 inputs; after five pools the features are 1x1x512."""
  layout: Sequence
  num_classes: int
  batch_norm: bool = True
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    index = 0
    for item in self.layout:
      if item == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      x = conv(x, item, (3, 3), self.init_scheme, name=f"conv_{index}")
      if self.batch_norm:
        x = batch_norm(x, train, name=f"bn_{index}")
      x = nn.relu(x)
      index += 1
    x = x.reshape((x.shape[0], -1))
    return dense(x, self.num_classes, self.init_scheme, name="output")
