"""ResNets: CIFAR ResNet-20/32/56 (He et al. 2016, open_lth layout), ResNet-18 with the
CIFAR stem, and ResNet-18/50 with the ImageNet stem (torchvision's layout).

The ImageNet stem is a 7x7 stride-2 convolution (pad 3), BatchNorm, ReLU and a
3x3 stride-2 max pool (pad 1); ResNet-50's bottleneck blocks are 1x1 -> 3x3
(the stride, "ResNet v1.5" as torchvision) -> 1x1 with 4x expansion.

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


class Bottleneck(nn.Module):
  """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(4x)-BN + shortcut, then ReLU."""
  features: int
  strides: int
  init_scheme: str
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    out = self.features * self.expansion
    y = conv(x, self.features, (1, 1), self.init_scheme, "conv_0", padding=PAD_1X1,
             use_bias=False)
    y = nn.relu(batch_norm(y, train, "bn_0"))
    y = conv(y, self.features, (3, 3), self.init_scheme, "conv_1", strides=self.strides,
             padding=PAD_3X3, use_bias=False)
    y = nn.relu(batch_norm(y, train, "bn_1"))
    y = conv(y, out, (1, 1), self.init_scheme, "conv_2", padding=PAD_1X1, use_bias=False)
    y = batch_norm(y, train, "bn_2")
    if self.strides != 1 or x.shape[-1] != out:
      x = conv(x, out, (1, 1), self.init_scheme, "shortcut_conv", strides=self.strides,
               padding=PAD_1X1, use_bias=False)
      x = batch_norm(x, train, "shortcut_bn")
    return nn.relu(x + y)


def imagenet_stem(x: jax.Array, features: int, train: bool, init_scheme: str) -> jax.Array:
  """7x7/2 convolution (pad 3), BatchNorm, ReLU, 3x3/2 max pool (pad 1): 224 -> 56."""
  x = conv(x, features, (7, 7), init_scheme, "stem_conv", strides=2, padding=((3, 3), (3, 3)),
           use_bias=False)
  x = nn.relu(batch_norm(x, train, "stem_bn"))
  # PyTorch's MaxPool2d(3, 2, padding=1) pads with -inf.
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class ResNet(nn.Module):
  """A ResNet: stem, stages of blocks, global average pool, output.

  Attributes:
    stage_widths: each stage's width (a bottleneck stage outputs 4x it).
    blocks_per_stage: the blocks of every stage (an int), or of each stage.
    stem: "cifar" (one 3x3 convolution) or "imagenet" (`imagenet_stem`).
    bottleneck: bottleneck blocks (ResNet-50) instead of basic ones.
  """
  stage_widths: Sequence[int]
  blocks_per_stage: int | Sequence[int]
  num_classes: int
  init_scheme: str = "torch"
  stem: str = "cifar"
  bottleneck: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.stem == "imagenet":
      x = imagenet_stem(x, self.stage_widths[0], train, self.init_scheme)
    else:
      x = conv(x, self.stage_widths[0], (3, 3), self.init_scheme, "stem_conv",
               padding=PAD_3X3, use_bias=False)
      x = nn.relu(batch_norm(x, train, "stem_bn"))
    blocks = self.blocks_per_stage
    counts = [blocks] * len(self.stage_widths) if isinstance(blocks, int) else list(blocks)
    block_type = Bottleneck if self.bottleneck else BasicBlock
    for stage, (features, count) in enumerate(zip(self.stage_widths, counts)):
      for block in range(count):
        strides = 2 if stage > 0 and block == 0 else 1
        x = block_type(features, strides, self.init_scheme,
                       name=f"stage{stage}_block{block}")(x, train)
    x = x.mean(axis=(1, 2))
    return dense(x, self.num_classes, self.init_scheme, name="output")
