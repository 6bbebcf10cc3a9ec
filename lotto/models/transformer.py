"""Transformers: a decoder-only character/token language model ("gpt") and a Vision
Transformer ("vit").

Both stack the same pre-LayerNorm blocks,

  x = x + out(attention(ln_1(x)));  x = x + fc_out(gelu(fc_in(ln_2(x)))),

whose four attention projections (`query`, `key`, `value`, `out`) and two MLP layers
(`fc_in`, `fc_out`) are separate Dense layers: each is a 2-D kernel that can be pruned
on its own, like the kernels of the MLPs and ConvNets. The GPT's attention is causal
(position i attends to positions <= i); the ViT's sees every patch.

Parameter names (flax paths):
  * `token_embedding/embedding` [vocab, width] (GPT), `patch_embedding/{kernel,bias}`
    [patch*patch*channels, width] (ViT), `class_token` [1, 1, width] (ViT),
    `position_embedding` [positions, width];
  * `block_<i>/ln_1`, `block_<i>/attention/{query,key,value,out}`, `block_<i>/ln_2`,
    `block_<i>/mlp/{fc_in,fc_out}`;
  * `ln_final` and the head `output`, as in every lotto model.

Pruned by default (`PRUNABLE_INCLUDE`, a `masks.include` regex): the attention and MLP
kernels only. Embeddings, the class token, LayerNorms, biases and the head stay dense:
lotto's rule for other models ("every leaf with ndim > 1") would take the embeddings and
the head too, so `lotto.models.default_masks_include` hands this regex to transformers.

Initialisation: Dense kernels and biases follow the model's init scheme
(`layers.dense`: "torch", "kaiming" or "flax"); embeddings, the class token and the
position embeddings are N(0, 0.02^2) as in GPT-2 and ViT; LayerNorms start at scale 1,
bias 0 (epsilon 1e-5, PyTorch's). There is no dropout: `train` changes nothing.

Not positively homogeneous (`NON_HOMOGENEOUS_PARTS`, declared by both classes): LayerNorm
divides by its input's spread (scaling its input changes nothing after it),
softmax(c s) is not c softmax(s), and GELU(x) != x GELU'(x). SynFlow's linearisation
(|theta|, an all-ones input) and the conservation law it rests on (Tanaka et al. 2020,
proved for activations with phi(x) = phi'(x) x) do not hold, so `lotto.pruning` refuses
SynFlow on these models; GraSP, SNIP and the other data-dependent scores only
differentiate the loss and apply (`lotto.pruning.methods_for`).
"""
from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lotto.core.errors import ConfigError
from lotto.models.layers import dense

# The attention and MLP kernels of every block: the default prunable leaves.
PRUNABLE_INCLUDE = r"^block_\d+/(attention/(query|key|value|out)|mlp/(fc_in|fc_out))/kernel$"

EMBEDDING_STD = 0.02
LAYER_NORM_EPSILON = 1e-5
MLP_RATIO = 4
# What keeps the family from being positively homogeneous in its weights.
NON_HOMOGENEOUS_PARTS = ("LayerNorm", "softmax attention", "GELU")


def _check_shape(width: int, heads: int, layers: int) -> None:
  if heads < 1 or layers < 1 or width < 1:
    raise ConfigError(f"transformer layers, heads and width must be positive; got layers="
                      f"{layers}, heads={heads}, width={width}")
  if width % heads:
    raise ConfigError(f"transformer width {width} is not a multiple of heads {heads}")


class SelfAttention(nn.Module):
  """Multi-head self-attention with separate `query`, `key`, `value` and `out` Dense layers.

  Attributes:
    heads: number of heads; the width (the input's last axis) must be a multiple of it.
    causal: position i attends only to positions <= i.
    init_scheme: "torch", "kaiming" or "flax" (see `layers`).
  """
  heads: int
  causal: bool
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Attends over the sequence axis of `x` [batch, length, width]; same shape out."""
    del train  # no dropout
    batch, length, width = x.shape
    head_width = width // self.heads

    def project(name: str) -> jax.Array:
      y = dense(x, width, self.init_scheme, name=name)
      return y.reshape(batch, length, self.heads, head_width)

    query, key, value = project("query"), project("key"), project("value")
    scores = jnp.einsum("bqhd,bkhd->bhqk", query, key) / math.sqrt(head_width)
    if self.causal:
      # A masked score is the most negative float: its softmax weight is exactly 0, so
      # no later position reaches an earlier one's output, not even by rounding.
      allowed = jnp.tril(jnp.ones((length, length), bool))
      scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, value).reshape(batch, length, width)
    return dense(mixed, width, self.init_scheme, name="out")


class FeedForward(nn.Module):
  """The block's MLP: `fc_in` (width -> MLP_RATIO * width), exact GELU, `fc_out`."""
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the MLP to the last axis of `x`."""
    hidden = dense(x, MLP_RATIO * x.shape[-1], self.init_scheme, name="fc_in")
    return dense(nn.gelu(hidden, approximate=False), x.shape[-1], self.init_scheme,
                 name="fc_out")


class Block(nn.Module):
  """A pre-LayerNorm transformer block: attention and MLP, each on a residual branch."""
  heads: int
  causal: bool
  init_scheme: str = "torch"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps [batch, length, width] to the same shape."""
    normed = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_1")(x)
    x = x + SelfAttention(self.heads, self.causal, self.init_scheme, name="attention")(
        normed, train)
    normed = nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_2")(x)
    return x + FeedForward(self.init_scheme, name="mlp")(normed)


def _blocks(x: jax.Array, layers: int, heads: int, causal: bool, init_scheme: str,
            train: bool) -> jax.Array:
  for i in range(layers):
    x = Block(heads, causal, init_scheme, name=f"block_{i}")(x, train)
  return nn.LayerNorm(epsilon=LAYER_NORM_EPSILON, name="ln_final")(x)


class GPT(nn.Module):
  """A decoder-only transformer language model.

  Attributes:
    vocab: number of tokens (the dataset's `num_classes`).
    layers: number of blocks.
    heads: attention heads per block.
    width: the residual stream's width (a multiple of `heads`).
    context: the longest sequence (rows of the position embedding).
    init_scheme: "torch", "kaiming" or "flax" for the Dense layers.
  """
  vocab: int
  layers: int = 2
  heads: int = 4
  width: int = 128
  context: int = 128
  init_scheme: str = "torch"
  non_homogeneous_parts: ClassVar[tuple[str, ...]] = NON_HOMOGENEOUS_PARTS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Next-token logits.

    Args:
      x: tokens [batch, length], length <= context. Integer ids; floats holding whole
        numbers are accepted and cast (lotto's input pipeline hands float32 inputs).
      train: accepted for the trainer's interface; changes nothing (no dropout).

    Returns:
      logits [batch, length, vocab]; position t depends on tokens 0..t only.

    Raises:
      ConfigError: a bad shape option, or a sequence longer than `context`.
    """
    _check_shape(self.width, self.heads, self.layers)
    if x.ndim != 2:
      raise ConfigError(f"model 'gpt' takes token sequences [batch, length]; got inputs "
                        f"of shape {tuple(x.shape)}")
    length = x.shape[1]
    if length > self.context:
      raise ConfigError(f"model 'gpt' has context {self.context} but got sequences of "
                        f"length {length}")
    tokens = x.astype(jnp.int32)
    embed = nn.Embed(self.vocab, self.width, name="token_embedding",
                     embedding_init=nn.initializers.normal(EMBEDDING_STD))
    positions = self.param("position_embedding", nn.initializers.normal(EMBEDDING_STD),
                           (self.context, self.width))
    h = embed(tokens) + positions[:length]
    h = _blocks(h, self.layers, self.heads, True, self.init_scheme, train)
    return dense(h, self.vocab, self.init_scheme, name="output")


def image_patches(x: jax.Array, patch: int) -> jax.Array:
  """Cuts inputs into flattened non-overlapping patches, row by row.

  Inputs are read as:
    * [b, h, w, c]: images;
    * [b, h, w]: one-channel images;
    * [b, n*n]: a flattened square one-channel image (MNIST as [b, 784]);
    * [b, L] with L not a square: a 1-D signal (MNIST-1D), whose patches are `patch`
      consecutive samples.
  An axis of length 1 is cut into patches of length 1.

  Returns:
    [b, patches, patch_h * patch_w * c].

  Raises:
    ConfigError: `patch` does not divide the image's height and width.
  """
  if x.ndim == 2:
    side = math.isqrt(x.shape[1])
    x = x.reshape(x.shape[0], side, side) if side * side == x.shape[1] else x[:, None, :]
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4:
    raise ConfigError(f"model 'vit' takes images [b, h, w, c], [b, h, w] or [b, n]; got inputs "
                      f"of shape {tuple(x.shape)}")
  b, h, w, c = x.shape
  ph, pw = (patch if h > 1 else 1), (patch if w > 1 else 1)
  if patch < 1 or h % ph or w % pw:
    raise ConfigError(f"model 'vit' patch {patch} does not divide its {h}x{w} inputs")
  x = x.reshape(b, h // ph, ph, w // pw, pw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // ph) * (w // pw), ph * pw * c)


class ViT(nn.Module):
  """A Vision Transformer classifier (Dosovitskiy et al. 2021), read out at the class token.

  Attributes:
    num_classes: size of the head.
    patch: patch side (see `image_patches` for how inputs are cut).
    layers: number of blocks.
    heads: attention heads per block.
    width: the residual stream's width (a multiple of `heads`).
    init_scheme: "torch", "kaiming" or "flax" for the Dense layers.
  """
  num_classes: int
  patch: int = 4
  layers: int = 2
  heads: int = 4
  width: int = 64
  init_scheme: str = "torch"
  non_homogeneous_parts: ClassVar[tuple[str, ...]] = NON_HOMOGENEOUS_PARTS

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Class logits [batch, num_classes] of images (see `image_patches` for the shapes).

    Raises:
      ConfigError: a bad shape option, or a patch that does not divide the inputs.
    """
    _check_shape(self.width, self.heads, self.layers)
    patches = image_patches(x, self.patch)
    h = dense(patches, self.width, self.init_scheme, name="patch_embedding")
    token = self.param("class_token", nn.initializers.normal(EMBEDDING_STD),
                       (1, 1, self.width))
    h = jnp.concatenate([jnp.broadcast_to(token, (h.shape[0], 1, self.width)), h], axis=1)
    positions = self.param("position_embedding", nn.initializers.normal(EMBEDDING_STD),
                           (h.shape[1], self.width))
    h = _blocks(h + positions, self.layers, self.heads, False, self.init_scheme, train)
    return dense(h[:, 0], self.num_classes, self.init_scheme, name="output")
