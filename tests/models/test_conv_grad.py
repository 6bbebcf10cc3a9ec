"""Convolutions with canonical gradients (`lotto.models.conv_grad`) are JAX's convolutions.

The custom VJP rewrites the input and kernel gradients so XLA:CPU runs them
in its fast form inside loops; the values must be the gradients JAX derives
itself, for every stride, padding and kernel size lotto's models use, and the
Hessian-vector products the scores take must still work through them.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lotto.core.scores import hessian_vector_product
from lotto.models.conv_grad import NHWC, conv_general_dilated


# Batch 37: the kernel gradient is summed over chunks of 16, 16 and 5 examples. The ResNets'
# strided convolutions pad explicitly as PyTorch (3x3: 1 on each side, 1x1: none); on an
# even size the last padded row is never reached by a window, on an odd size it is.
@pytest.mark.parametrize("batch, size, kernel, stride, padding", [
    (37, 9, 3, 1, "SAME"), (3, 8, 1, 2, "SAME"), (37, 7, 5, 3, ((1, 2), (0, 1))),
    (37, 8, 3, 2, ((1, 1), (1, 1))), (3, 7, 3, 2, ((1, 1), (1, 1))),
    (3, 8, 1, 2, ((0, 0), (0, 0))),
])
def test_gradients_equal_jaxs_own(batch, size, kernel, stride, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 4))
  w = jax.random.normal(jax.random.PRNGKey(1), (kernel, kernel, 4, 5))

  def loss(conv):
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (stride, stride), padding,
                                             dimension_numbers=NHWC)))

  mine = jax.jit(jax.grad(loss(conv_general_dilated), (0, 1)))(x, w)
  theirs = jax.jit(jax.grad(loss(lax.conv_general_dilated), (0, 1)))(x, w)
  for a, b in zip(mine, theirs):  # float32 sums over up to 37 x 81 terms, in another order
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(  # the forward pass is lax's own
      np.asarray(conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=NHWC)),
      np.asarray(lax.conv_general_dilated(x, w, (stride, stride), padding,
                                          dimension_numbers=NHWC)))


def test_dilated_and_grouped_convolutions_fall_through_to_lax():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4))
  grouped = lambda x, w: jnp.sum(conv_general_dilated(  # noqa: E731
      x, w, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=NHWC, feature_group_count=2))
  jaxpr = str(jax.make_jaxpr(jax.grad(grouped, 1))(x, w))
  assert "custom_vjp" not in jaxpr
  tangent = jax.jvp(grouped, (x, w), (x, w))[1]  # forward mode works: plain lax
  assert np.isfinite(float(tangent))


def test_hessian_vector_products_through_custom_gradients_match_forward_mode():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 2))
  v = jax.random.normal(jax.random.PRNGKey(2), w.shape)

  def loss(conv):
    return lambda w: jnp.sum(jnp.tanh(conv(x, w, (2, 2), "SAME", dimension_numbers=NHWC)) ** 2)

  mine = hessian_vector_product(jax.grad(loss(conv_general_dilated)), w, v)
  forward = jax.jvp(jax.grad(loss(lax.conv_general_dilated)), (w,), (v,))[1]
  np.testing.assert_allclose(np.asarray(mine), np.asarray(forward), rtol=1e-4, atol=1e-5)
