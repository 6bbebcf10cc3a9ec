"""A 2-D convolution whose gradients XLA:CPU runs fast inside compiled loops.

The gradient of a convolution is two more convolutions: the input gradient
(the output gradient convolved with the flipped kernel, inputs and outputs
of the kernel swapped) and the kernel gradient (inputs and output gradient
correlated over the batch). JAX emits them with non-canonical dimension
labels (`b01f_01oi->b01f`, `f01b_i01o->01bf`). In a jitted step XLA:CPU
rewrites them into its fast canonical form (`b01f_01io->b01f`, NHWC x HWIO)
plus transposes, but inside a `while` loop (lax.scan, fori_loop) it does
not, and runs them 7-60x slower (BUILD_NOTES.md: a 3x3 kernel gradient on
[128, 16, 16, 32] took 2.4 s per iteration in a loop, 36 ms outside).

`conv_general_dilated` here has lax's signature. For the case lotto's models
use (NHWC inputs, HWIO kernels, no dilation, one feature group) its
`custom_vjp` writes both gradients in the canonical form with explicit
transposes, so the same convolutions run inside and outside loops. The
kernel gradient is summed over chunks of 16 examples, which XLA:CPU runs
1.6-2.5x faster than one correlation over a batch of 128 (ResNet-20's
scanned step: 147 -> 217-223 images/s). The values are the same gradients
up to float32 summation order (the tests compare them with JAX's own); any
other case falls through to `lax.conv_general_dilated`.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

NHWC = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]


# Examples per kernel-gradient convolution: XLA:CPU's correlation over the batch runs
# 1.6-2.5x faster in chunks of 16 examples than over a batch of 128 (BUILD_NOTES.md:
# 8 chunks were best or near it on every ResNet-20 layer shape; 32 chunks varied).
KERNEL_GRAD_CHUNK = 16


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def canonical_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                   pads: Pads) -> jax.Array:
  """x [N, H, W, C] convolved with kernel [KH, KW, C, O] (strides, explicit pads)."""
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=NHWC)


def _forward(x, kernel, strides, pads):
  return canonical_conv(x, kernel, strides, pads), (x, kernel)


def _backward(strides, pads, residuals, grad):
  x, kernel = residuals
  sizes = kernel.shape[:2]
  # The rows of the padded input the strided windows never reach (the input gradient is 0
  # there; the kernel gradient's correlation produces them and they are cut off).
  spare = [(x.shape[1 + d] + pads[d][0] + pads[d][1] - sizes[d]) % strides[d] for d in (0, 1)]
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # [KH, KW, O, C]
  grad_x = lax.conv_general_dilated(
      grad, flipped, (1, 1),
      [(sizes[d] - 1 - pads[d][0], sizes[d] - 1 - pads[d][1] + spare[d]) for d in (0, 1)],
      lhs_dilation=strides, dimension_numbers=NHWC)
  parts = [_kernel_gradient(x[start:start + KERNEL_GRAD_CHUNK],
                            grad[start:start + KERNEL_GRAD_CHUNK], strides, pads, sizes)
           for start in range(0, x.shape[0], KERNEL_GRAD_CHUNK)]
  return grad_x, functools.reduce(jnp.add, parts)


def _kernel_gradient(x, grad, strides, pads, sizes):
  # Channels as the batch, the batch as the features: [C, H, W, N] x [P, Q, N, O].
  correlation = lax.conv_general_dilated(
      x.transpose(3, 1, 2, 0), grad.transpose(1, 2, 0, 3), (1, 1), pads,
      rhs_dilation=strides, dimension_numbers=NHWC)
  return correlation[:, :sizes[0], :sizes[1], :].transpose(1, 2, 0, 3)


canonical_conv.defvjp(_forward, _backward)


def _is_nhwc(dimension_numbers: Any) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return tuple(dimension_numbers) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  return tuple(dimension_numbers) == NHWC


def _ones(values: Sequence[int] | None) -> bool:
  return values is None or all(v == 1 for v in values)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """`lax.conv_general_dilated`, with canonical gradients for 2-D NHWC x HWIO convolutions
  without dilation or groups (what Flax's `nn.Conv(conv_general_dilated=...)` calls)."""
  simple = (lhs.ndim == 4 and _is_nhwc(dimension_numbers) and _ones(lhs_dilation) and
            _ones(rhs_dilation) and feature_group_count == 1 and batch_group_count == 1 and
            precision is None and preferred_element_type is None)
  if not simple:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    batch_group_count, precision, preferred_element_type)
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return canonical_conv(lhs, rhs, strides, pads)
