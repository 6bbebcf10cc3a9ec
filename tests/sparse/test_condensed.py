"""Condensed constant fan-in layers: the written-out layout of a small kernel and its fan-out
table, exact conversion both ways, the one-line error for other masks, and the condensed
matmul's forward, weight gradient and input gradient against the masked dense layer and
against the formulas evaluated by plain loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.core.fanin import fanin_mask
from lotto.sparse.condensed import (Condensed, condense, expand, fanout_slots, fanout_table,
                                    max_fan_out)
from lotto.sparse.condensed_ops import condensed_dense

# A 4 x 3 kernel keeping k = 2 inputs per column: column 0 keeps inputs 1, 3; column 1
# keeps 0, 1; column 2 keeps 1, 2. Input 1 feeds all three columns, input 0 one, input 2 one,
# input 3 one.
KERNEL = np.array([[1., 2., 3.],
                   [4., 5., 6.],
                   [7., 8., 9.],
                   [10., 11., 12.]], np.float32)
MASK = np.array([[0, 1, 0],
                 [1, 1, 1],
                 [0, 0, 1],
                 [1, 0, 0]], bool)
INDICES = [[1, 3], [0, 1], [1, 2]]
VALUES = [[4., 10.], [2., 5.], [6., 9.]]
# Flat slot positions o * k + j: (0,0)=0 reads input 1, (0,1)=1 input 3, (1,0)=2 input 0,
# (1,1)=3 input 1, (2,0)=4 input 1, (2,1)=5 input 2; pad with 3 * 2 = 6 to width 3.
FANOUT = [[2, 6, 6], [0, 3, 4], [5, 6, 6], [1, 6, 6]]


def test_the_condensed_layout_of_a_written_out_kernel():
  layer = condense(KERNEL, MASK)
  np.testing.assert_array_equal(layer.indices, INDICES)
  np.testing.assert_array_equal(layer.values, VALUES)
  assert layer.indices.dtype == jnp.int32 and (layer.fan_in, layer.out_features) == (2, 3)
  np.testing.assert_array_equal(fanout_table(layer.indices, 4), FANOUT)
  assert max_fan_out(layer.indices, 4) == 3
  kernel, mask = expand(layer, 4)
  np.testing.assert_array_equal(kernel, np.where(MASK, KERNEL, 0))
  np.testing.assert_array_equal(mask, MASK)


@pytest.mark.parametrize("shape, k", [((30, 20), 3), ((30, 20), 1), ((30, 20), 30),
                                      ((784, 50), 8)])
def test_conversion_is_exact_both_ways(shape, k):
  kernel = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  mask = np.asarray(fanin_mask(jax.random.PRNGKey(3), shape, k))
  layer = condense(kernel, mask)
  assert layer.values.shape == (shape[1], k)
  assert np.all(np.diff(np.asarray(layer.indices), axis=1) > 0)  # ascending, distinct
  dense, back = jax.jit(expand, static_argnums=1)(layer, shape[0])
  np.testing.assert_array_equal(back, mask)
  np.testing.assert_array_equal(dense, np.where(mask, kernel, 0))  # bit-exact
  again = condense(dense, back)
  np.testing.assert_array_equal(again.indices, layer.indices)
  np.testing.assert_array_equal(again.values, layer.values)


def test_a_mask_that_is_not_constant_fan_in_is_one_line():
  mask = MASK.copy()
  mask[0, 0] = True  # column 0 now keeps 3 inputs, the others 2
  with pytest.raises(ConfigError) as error:
    condense(KERNEL, mask, "hidden_1/kernel")
  message = str(error.value)
  assert "\n" not in message and "hidden_1/kernel" in message
  assert "2 to 3 inputs" in message and "distribution=fanin" in message
  with pytest.raises(ConfigError, match="keeps no weights"):
    condense(KERNEL, np.zeros_like(MASK))


def test_fanout_slots_jitted_at_a_capacity():
  indices = jnp.asarray(INDICES, jnp.int32)
  slots = jax.jit(fanout_slots, static_argnums=(1, 2))
  np.testing.assert_array_equal(slots(indices, 4, 3), FANOUT)
  # Wider: more padding. Narrower: an input's later slots are left out (input 1 loses 4).
  np.testing.assert_array_equal(slots(indices, 4, 4), [r + [6] for r in FANOUT])
  np.testing.assert_array_equal(slots(indices, 4, 2), [r[:2] for r in FANOUT])
  # An input nothing reads has a row of padding only.
  np.testing.assert_array_equal(slots(indices, 5, 3)[4], [6, 6, 6])


def _loops(x, dy, indices, values, in_features):
  """The three formulas of condensed_ops' docstring by plain Python loops (float64)."""
  batch, (out, k) = x.shape[0], indices.shape
  y, dv, dx = np.zeros((batch, out)), np.zeros((out, k)), np.zeros((batch, in_features))
  for b in range(batch):
    for o in range(out):
      for j in range(k):
        i = indices[o, j]
        y[b, o] += values[o, j] * x[b, i]
        dv[o, j] += dy[b, o] * x[b, i]
        dx[b, i] += values[o, j] * dy[b, o]
  return y, dv, dx


@pytest.mark.parametrize("in_features, out, k, batch", [(12, 7, 3, 5), (12, 7, 1, 4),
                                                        (9, 6, 9, 3), (40, 5, 2, 1)])
def test_condensed_matmul_and_its_gradients(in_features, out, k, batch):
  rng = np.random.default_rng(k)
  kernel = rng.normal(size=(in_features, out)).astype(np.float32)
  mask = np.asarray(fanin_mask(jax.random.PRNGKey(k), (in_features, out), k))
  layer = condense(kernel, mask)
  fanout = fanout_table(layer.indices, in_features)
  x = rng.normal(size=(batch, in_features)).astype(np.float32)
  dy = rng.normal(size=(batch, out)).astype(np.float32)
  y_loop, dv_loop, dx_loop = _loops(x.astype(np.float64), dy.astype(np.float64),
                                    np.asarray(layer.indices), np.asarray(layer.values, np.float64),
                                    in_features)

  def condensed_loss(x, values):
    return jnp.sum(condensed_dense(x, layer.indices, values, fanout) * dy)

  y = jax.jit(condensed_dense)(jnp.asarray(x), layer.indices, layer.values, fanout)
  dx, dv = jax.jit(jax.grad(condensed_loss, (0, 1)))(jnp.asarray(x), layer.values)
  np.testing.assert_allclose(y, y_loop, atol=1e-5)
  np.testing.assert_allclose(dv, dv_loop, atol=1e-5)
  np.testing.assert_allclose(dx, dx_loop, atol=1e-5)
  # The masked dense layer's numbers, its kernel gradient read at the kept positions.
  masked_loss = lambda x, w: jnp.sum((x @ (w * mask)) * dy)
  dx_dense, dw_dense = jax.grad(masked_loss, (0, 1))(jnp.asarray(x), jnp.asarray(kernel))
  np.testing.assert_allclose(y, x @ np.where(mask, kernel, 0), atol=1e-5)
  np.testing.assert_allclose(dx, dx_dense, atol=1e-5)
  np.testing.assert_allclose(dv, condense(dw_dense, mask).values, atol=1e-5)


def test_gradients_are_gathers_without_scatter_add():
  layer = Condensed(jnp.asarray(VALUES), jnp.asarray(INDICES, jnp.int32))
  fanout = jnp.asarray(FANOUT, jnp.int32)
  loss = lambda x, v: condensed_dense(x, layer.indices, v, fanout).sum()
  program = str(jax.make_jaxpr(jax.grad(loss, (0, 1)))(jnp.ones((2, 4)), layer.values))
  assert "gather" in program and "scatter-add" not in program and "scatter_add" not in program
  # Written out: x = ones, dy = ones. dV = batch (2) everywhere; dx[i] = sum of the values
  # reading input i: input 0: 2; input 1: 4 + 5 + 6; input 2: 9; input 3: 10.
  dx, dv = jax.grad(loss, (0, 1))(jnp.ones((2, 4)), layer.values)
  np.testing.assert_array_equal(dv, np.full((3, 2), 2.0))
  np.testing.assert_array_equal(dx, [[2., 15., 9., 10.]] * 2)
