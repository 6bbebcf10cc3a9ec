"""Fully connected networks: the MNIST-1D MLP and LeNet-300-100."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from lotto.models.layers import dense


class MLP(nn.Module):
  """ReLU MLP; hidden layers `hidden_<i>`, the last layer is named `output`."""
  widths: Sequence[int]
  num_classes: int
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or BN
    x = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.widths):
      x = nn.relu(dense(x, width, self.init_scheme, name=f"hidden_{i}"))
    return dense(x, self.num_classes, self.init_scheme, name="output")
