"""Model registry: every model lotto can train, built from a name.

`create_model(name, num_classes, init, **options)` returns a Flax Linen module
whose `__call__(x, train)` returns logits. The output layer is always named
`output`, so "exclude the output layer" is the regex `^output/`.

`default_masks_include(name)` is the `masks.include` regex a model is pruned by when
the config gives none: "" (every leaf with ndim > 1) for the MLPs and ConvNets, the
attention and MLP kernels for the transformers ("gpt", "vit").
"""
from __future__ import annotations

import inspect

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.models.conv import ConvNet, LeNet5
from lotto.models.layers import INIT_SCHEMES
from lotto.models.mlp import MLP
from lotto.models.resnet import ResNet
from lotto.models.transformer import GPT, PRUNABLE_INCLUDE, ViT
from lotto.models.vgg import VGG, VGG_LAYOUTS
from lotto.core.registry import Registry
from lotto.core.types import Params, PyTree

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def _mlp(num_classes: int, init: str, widths=(500, 500)) -> nn.Module:
  return MLP(widths=tuple(widths), num_classes=num_classes, init_scheme=init)


def _vgg(depth: int, bn: bool):
  def build(num_classes: int, init: str) -> nn.Module:
    return VGG(VGG_LAYOUTS[depth], num_classes, batch_norm=bn, init_scheme=init)
  return build


def _cifar_resnet(depth: int):
  def build(num_classes: int, init: str) -> nn.Module:
    return ResNet((16, 32, 64), (depth - 2) // 6, num_classes, init_scheme=init)
  return build


MODELS.register("mlp", _mlp)
MODELS.register("lenet300", lambda num_classes, init: MLP((300, 100), num_classes, init))
MODELS.register("lenet5", lambda num_classes, init: LeNet5(num_classes, init))
MODELS.register("conv2", lambda num_classes, init: ConvNet((64, 64), num_classes, init))
MODELS.register("conv4", lambda num_classes, init: ConvNet((64, 64, 128, 128), num_classes, init))
MODELS.register("conv6", lambda num_classes, init: ConvNet((64, 64, 128, 128, 256, 256),
                                                           num_classes, init))
for _depth in (11, 16, 19):
  MODELS.register(f"vgg{_depth}", _vgg(_depth, bn=False))
  MODELS.register(f"vgg{_depth}_bn", _vgg(_depth, bn=True))
for _depth in (20, 32, 56):
  MODELS.register(f"resnet{_depth}", _cifar_resnet(_depth))
MODELS.register("resnet18", lambda num_classes, init: ResNet((64, 128, 256, 512), 2,
                                                             num_classes, init_scheme=init))
# The ImageNet layouts (torchvision's): the 7x7 stem with max pooling.
MODELS.register("resnet18_imagenet", lambda num_classes, init: ResNet(
    (64, 128, 256, 512), 2, num_classes, init_scheme=init, stem="imagenet"))
MODELS.register("resnet50", lambda num_classes, init: ResNet(
    (64, 128, 256, 512), (3, 4, 6, 3), num_classes, init_scheme=init, stem="imagenet",
    bottleneck=True))


def _gpt(num_classes: int, init: str, layers: int = 2, heads: int = 4, width: int = 128,
         context: int = 128) -> nn.Module:
  return GPT(vocab=num_classes, layers=layers, heads=heads, width=width, context=context,
             init_scheme=init)


def _vit(num_classes: int, init: str, layers: int = 2, heads: int = 4, width: int = 64,
         patch: int = 4) -> nn.Module:
  return ViT(num_classes, patch=patch, layers=layers, heads=heads, width=width,
             init_scheme=init)


MODELS.register("gpt", _gpt)
MODELS.register("vit", _vit)

# Models whose default prunable leaves are not "every leaf with ndim > 1".
_DEFAULT_MASKS_INCLUDE = {"gpt": PRUNABLE_INCLUDE, "vit": PRUNABLE_INCLUDE}


def default_masks_include(name: str) -> str:
  """The `masks.include` regex model `name` is pruned by when the config sets none.

  "" (every leaf with ndim > 1: all Dense/Conv kernels) for every model but the
  transformers, whose default is their attention and MLP kernels (embeddings, the
  class token, LayerNorms and the `output` head stay dense).

  Raises:
    ConfigError: unknown model name.
  """
  MODELS.get(name)
  return _DEFAULT_MASKS_INCLUDE.get(name, "")


def check_model(name: str, init: str = "torch", **options: Any) -> None:
  """Checks a model's name, init scheme and options without building it.

  Raises:
    ConfigError: unknown name, init scheme, or option.
  """
  factory = MODELS.get(name)
  if init not in INIT_SCHEMES:
    raise ConfigError(f"unknown model init {init!r}; valid choices: {', '.join(INIT_SCHEMES)}")
  try:
    inspect.signature(factory).bind(1, init, **options)
  except TypeError as error:
    raise ConfigError(f"model {name!r} does not take options {sorted(options)}: {error}") from None


def create_model(name: str, num_classes: int, init: str = "torch", **options: Any) -> nn.Module:
  """Builds a registered model.

  Args:
    name: a registered model name (see `MODELS.names()`).
    num_classes: size of the output layer.
    init: "torch" (open_lth), "kaiming" (zero biases, Synaptic-Flow) or "flax".
    **options: model-specific options: `widths` for "mlp"; `layers`, `heads`, `width`,
      `context` for "gpt" (its vocabulary is `num_classes`); `layers`, `heads`,
      `width`, `patch` for "vit".

  Raises:
    ConfigError: unknown name, init scheme, or option.
  """
  check_model(name, init, **options)
  return MODELS.get(name)(num_classes, init, **options)


def init_variables(model: nn.Module, key: jax.Array,
                   input_shape: Sequence[int]) -> tuple[Params, PyTree]:
  """Initialises a model; returns (params, batch_stats) ({} if no BN)."""
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  variables = model.init(key, dummy, train=False)
  return variables["params"], variables.get("batch_stats", {})
