"""The inputs each Dense and Conv kernel of a Flax Linen model sees in a forward pass.

One-shot pruning (`lotto.jobs.oneshot`) needs, for every prunable kernel, the
rows X[n, in] of its matrix view W[in, out] (`lotto.pruning.oneshot`): the
inputs of a Dense layer with every leading axis a sample (examples, tokens),
and for a convolution its im2col patches, one row per example and output
position, with the features in the kernel's (kh, kw, cin) order, so that
`patches @ kernel.reshape(-1, cout)` is the convolution without its bias.

The inputs are captured with Flax's method interception
(`flax.linen.intercept_methods`): every `__call__` of an `nn.Dense` or
`nn.Conv` module during `model.apply` passes through an interceptor that
records its first argument under the module's kernel name ("a/b/kernel", the
names `lotto.core.masks.leaf_names` gives the params), so no model needs to
be written for it. A layer called more than once in a pass (shared weights)
contributes the rows of every call.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.linear import canonicalize_padding

from lotto.core.errors import ConfigError

KERNEL_MODULES = (nn.Dense, nn.Conv)

# apply(variables, x) -> the model's output (e.g. `lambda v, x: model.apply(v, x, train=False)`).
Forward = Callable[[Any, jax.Array], Any]


def kernel_name(module: nn.Module) -> str:
  """The key path of `module`'s kernel in the params ("block_0/attention/query/kernel")."""
  return "/".join(module.path + ("kernel",))


def conv_patches(x: jax.Array, kernel_size: tuple[int, ...], strides: tuple[int, ...],
                 padding: str | list[tuple[int, int]], input_dilation: tuple[int, ...],
                 kernel_dilation: tuple[int, ...]) -> jax.Array:
  """The im2col patches of a channels-last convolution, in the kernel's feature order.

  Args:
    x: [batch, *spatial, cin] inputs.
    kernel_size, strides, input_dilation, kernel_dilation: per spatial axis.
    padding: "SAME", "VALID" or a (low, high) pair per spatial axis.

  Returns:
    [batch * prod(output spatial), prod(kernel_size) * cin] rows whose features
    are ordered as the kernel's leading axes (kh, kw, ..., cin); lax orders the
    patch features (cin, kh, kw, ...), so they are reordered here.
  """
  rank = len(kernel_size)
  spatial = "".join("HWDXYZ"[:rank])
  numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
  patches = jax.lax.conv_general_dilated_patches(
      x, tuple(kernel_size), tuple(strides), padding, lhs_dilation=tuple(input_dilation),
      rhs_dilation=tuple(kernel_dilation), dimension_numbers=numbers,
      precision=jax.lax.Precision.HIGHEST)
  cin = x.shape[-1]
  rows = patches.reshape(-1, cin, *kernel_size)
  # (cin, k_1, ..., k_r) -> (k_1, ..., k_r, cin)
  return jnp.moveaxis(rows, 1, -1).reshape(rows.shape[0], -1)


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
  if value is None:
    return (1,) * rank
  return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank


def input_rows(module: nn.Module, x: jax.Array) -> jax.Array:
  """The rows X[n, in] of `module`'s kernel matrix view for its call on `x`.

  Raises:
    ConfigError: a convolution this cannot unfold (grouped, circular or causal
      padding, unbatched input), naming the layer.
  """
  x = jnp.asarray(x, jnp.float32)
  if isinstance(module, nn.Dense):
    return x.reshape(-1, x.shape[-1])
  name = kernel_name(module)
  rank = len(module.kernel_size)
  if module.feature_group_count != 1:
    raise ConfigError(f"one-shot pruning: layer {name} is a grouped convolution "
                      f"(feature_group_count={module.feature_group_count}); exclude it with "
                      "masks.exclude")
  if x.ndim != rank + 2:
    raise ConfigError(f"one-shot pruning: layer {name} got input of shape {x.shape}; a "
                      f"batched [batch, *spatial, channels] input of rank {rank + 2} is needed")
  padding = canonicalize_padding(module.padding, rank)
  if isinstance(padding, str) and padding not in ("SAME", "VALID"):
    raise ConfigError(f"one-shot pruning: layer {name} has padding {padding!r}; only SAME, "
                      "VALID and explicit padding unfold into patches")
  return conv_patches(x, tuple(module.kernel_size), _tuple(module.strides, rank), padding,
                      _tuple(module.input_dilation, rank), _tuple(module.kernel_dilation, rank))


@contextlib.contextmanager
def _recording(record: Callable[[nn.Module, jax.Array], None]) -> Iterator[None]:
  """Within the block, `record(module, input)` sees every Dense/Conv call."""

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and isinstance(context.module, KERNEL_MODULES):
      record(context.module, args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield


def call_order(forward: Forward, variables: Any, x: jax.Array) -> list[str]:
  """The kernel names of the Dense and Conv layers in the order a forward pass calls them
  (each once, at its first call); traced only (`jax.eval_shape`), nothing is computed."""
  order: list[str] = []

  def record(module: nn.Module, _) -> None:
    name = kernel_name(module)
    if name not in order:
      order.append(name)

  def run(variables, x):
    with _recording(record):
      return forward(variables, x)

  jax.eval_shape(run, variables, x)
  return order


def layer_inputs(forward: Forward, variables: Any, x: jax.Array, name: str) -> jax.Array:
  """The rows X[n, in] that layer `name` ("a/b/kernel") sees in `forward(variables, x)`
  (jittable, with `name` static; under `jit` the layers after it are not computed).

  Raises:
    ConfigError: no Dense or Conv layer of that kernel name is called (one line).
  """
  rows: list[jax.Array] = []

  def record(module: nn.Module, inputs: jax.Array) -> None:
    if kernel_name(module) == name:
      rows.append(input_rows(module, inputs))

  with _recording(record):
    forward(variables, x)
  if not rows:
    raise ConfigError(f"one-shot pruning: {name} is not the kernel of a Dense or Conv layer "
                      "the model calls, so its inputs are unknown; exclude it with "
                      "masks.exclude")
  return rows[0] if len(rows) == 1 else jnp.concatenate(rows)
