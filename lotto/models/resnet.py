"""ResNets: CIFAR ResNet-20/32/56 (He et al. 2016, open_lth layout) and ResNet-18.

Shortcuts that change shape are 1x1 convolutions with BatchNorm (projection),
as in open_lth. Convolutions before a BatchNorm have no bias.

Padding is PyTorch's, as in open_lth and Synaptic-Flow: every 3x3 convolution
pads 1 on each side (`padding=1`), the stride-2 ones included, and the 1x1
projections pad nothing (`padding=0`). Flax's "SAME" would pad a stride-2 3x3
convolution of an even-sized input 0 before and 1 after: another function.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

from lotto.models.layers import batch_norm, conv, dense

# (top, bottom), (left, right): PyTorch's padding=1 for 3x3 kernels, padding=0 for 1x1.
PAD_3X3 = ((1, 1), (1, 1))
PAD_1X1 = ((0, 0), (0, 0))


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN + shortcut, then ReLU."""
  features: int
  strides: int
  init_scheme: str

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = conv(x, self.features, (3, 3), self.init_scheme, "conv_0", strides=self.strides,
             padding=PAD_3X3, use_bias=False)
    y = nn.relu(batch_norm(y, train, "bn_0"))
    y = conv(y, self.features, (3, 3), self.init_scheme, "conv_1", padding=PAD_3X3,
             use_bias=False)
    y = batch_norm(y, train, "bn_1")
    if self.strides != 1 or x.shape[-1] != self.features:
      x = conv(x, self.features, (1, 1), self.init_scheme, "shortcut_conv", strides=self.strides,
               padding=PAD_1X1, use_bias=False)
      x = batch_norm(x, train, "shortcut_bn")
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A ResNet of BasicBlocks: stem conv, stages, global average pool, output."""
  stage_widths: Sequence[int]
  blocks_per_stage: int
  num_classes: int
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = conv(x, self.stage_widths[0], (3, 3), self.init_scheme, "stem_conv", padding=PAD_3X3,
             use_bias=False)
    x = nn.relu(batch_norm(x, train, "stem_bn"))
    for stage, features in enumerate(self.stage_widths):
      for block in range(self.blocks_per_stage):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(features, strides, self.init_scheme, name=f"stage{stage}_block{block}")(x, train)
    x = x.mean(axis=(1, 2))
    return dense(x, self.num_classes, self.init_scheme, name="output")
