"""The condensed MLP train step equals masked dense training: 200 Adam steps from the same
init, masks and batches give the same weights (float32 summation order apart), losses and
test accuracy, at several densities (k = 1 in every layer included), widths that no k
divides and batch sizes; the dense gradient the update steps rank is x^T dy at every
position."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.core.fanin import fan_in_count, fanin_mask
from lotto.sparse.condensed import Condensed, expand
from lotto.sparse.condensed_train import (condense_mlp, dense_gradients, init_state,
                                          make_train_step, mlp_logits)

STEPS, LR = 200, 3e-3  # float32 differences after 200 steps were <= 2.4e-7


def _problem(widths, seed=0):
  """Kaiming-normal kernels, small biases, and teacher-labelled Gaussian inputs."""
  rng = np.random.default_rng(seed)
  kernels = [rng.normal(size=(a, b)).astype(np.float32) * np.sqrt(2 / a)
             for a, b in zip(widths[:-1], widths[1:])]
  biases = [rng.normal(size=b).astype(np.float32) * 0.1 for b in widths[1:]]
  x = rng.normal(size=(600, widths[0])).astype(np.float32)
  labels = np.argmax(x @ rng.normal(size=(widths[0], widths[-1])), axis=1)  # a linear teacher
  return kernels, biases, x, labels.astype(np.int32)


def _dense_logits(params, masks, x):
  """The masked dense MLP: relu(h @ (W * M) + b) between layers (independent of lotto)."""
  h = x
  for index, ((w, b), m) in enumerate(zip(params, masks)):
    h = h @ (w * m) + b
    if index < len(params) - 1:
      h = jnp.maximum(h, 0)
  return h


def _dense_loss(params, masks, x, labels):
  logits = _dense_logits(params, masks, x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _dense_train(kernels, biases, masks, xs, ys):
  """Masked dense Adam: gradients masked, params re-masked (lotto.train.step's order)."""
  tx = optax.adam(LR)
  params = [(jnp.asarray(w * m), jnp.asarray(b)) for w, b, m in zip(kernels, biases, masks)]

  def step(carry, batch):
    params, state = carry
    loss, grads = jax.value_and_grad(_dense_loss)(params, masks, *batch)
    grads = [(g * m, gb) for (g, gb), m in zip(grads, masks)]
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return ([(w * m, b) for (w, b), m in zip(params, masks)], state), loss

  (params, _), losses = jax.jit(lambda c, b: jax.lax.scan(step, c, b))(
      (params, tx.init(params)), (xs, ys))
  return params, losses


def _condensed_train(kernels, biases, masks, xs, ys):
  tx = optax.adam(LR)
  params, structure = condense_mlp(kernels, biases, masks)
  step = make_train_step(tx)
  run = jax.jit(lambda state, batches: jax.lax.scan(
      lambda state, batch: step(state, structure, *batch), state, batches))
  state, losses = run(init_state(params, tx), (xs, ys))
  return state, structure, losses


@pytest.mark.parametrize("widths, density, batch, ks", [
    ((32, 24, 16, 4), 0.25, 16, (8, 6, 4)),
    ((32, 24, 16, 4), 0.03, 32, (1, 1, 1)),        # k = round(0.96), round(0.72), 1 (from 0)
    ((32, 23, 13, 4), 0.1, 24, (3, 2, 1)),          # widths no k divides
    ((32, 23, 13, 4), 1.0, 7, (32, 23, 13)),        # dense, odd batch
])
def test_condensed_training_equals_masked_dense_training(widths, density, batch, ks):
  kernels, biases, x, labels = _problem(widths)
  masks = [np.asarray(fanin_mask(jax.random.PRNGKey(i), w.shape, fan_in_count(density,
                                                                                 w.shape[0])))
           for i, w in enumerate(kernels)]
  assert tuple(int(m.sum(axis=0)[0]) for m in masks) == ks
  train_x, train_y, test_x, test_y = x[:500], labels[:500], x[500:], labels[500:]
  chosen = np.random.default_rng(1).integers(0, 500, size=(STEPS, batch))
  xs, ys = jnp.asarray(train_x[chosen]), jnp.asarray(train_y[chosen])

  dense_params, dense_losses = _dense_train(kernels, biases, masks, xs, ys)
  state, structure, losses = _condensed_train(kernels, biases, masks, xs, ys)

  np.testing.assert_allclose(losses, dense_losses, rtol=2e-6, atol=1e-6)
  for (w, b), layer, wiring, mask in zip(dense_params, state.params, structure, masks):
    kernel, kept = expand(Condensed(layer["values"], wiring["indices"]), mask.shape[0])
    np.testing.assert_array_equal(kept, mask)
    np.testing.assert_allclose(kernel, w, atol=2e-6)
    np.testing.assert_allclose(layer["bias"], b, atol=2e-6)
  # Condensed moments: one per kept weight, as many as the values.
  mu = state.opt_state[0].mu
  assert [m["values"].shape for m in mu] == [(w.shape[1], k) for w, k in zip(kernels, ks)]
  dense_accuracy = np.mean(np.argmax(_dense_logits(dense_params, masks, test_x), 1) == test_y)
  accuracy = np.mean(np.argmax(mlp_logits(state.params, structure, test_x), 1) == test_y)
  assert accuracy == dense_accuracy
  # Not a comparison of two frozen nets: every layer's kept weights moved (Adam moves a
  # weight by up to LR = 3e-3 a step), and the denser nets learn the teacher (test accuracy
  # above chance, 0.25; k = 1 nets barely learn it).
  for (w, _), kernel, mask in zip(dense_params, kernels, masks):
    assert np.abs(np.asarray(w) - kernel * mask)[mask].mean() > 1e-3
  if density >= 0.25:
    assert losses[-20:].mean() < 0.8 * losses[:20].mean() and accuracy > 0.45


def test_dense_gradients_are_the_masked_dense_kernel_gradients_everywhere():
  kernels, biases, x, labels = _problem((32, 23, 13, 4), seed=2)
  masks = [np.asarray(fanin_mask(jax.random.PRNGKey(i), w.shape, 3)) for i, w in
           enumerate(kernels)]
  params, structure = condense_mlp(kernels, biases, masks)
  grads = jax.jit(dense_gradients)(params, structure, x[:40], labels[:40])
  dense = [(jnp.asarray(w * m), jnp.asarray(b)) for w, b, m in zip(kernels, biases, masks)]
  # d loss / d (W * M): the masked model's gradient with respect to its effective weights.
  ones = [np.ones_like(m) for m in masks]
  expected = jax.grad(_dense_loss)(dense, ones, x[:40], labels[:40])
  for got, (want, _), mask in zip(grads, expected, masks):
    assert got.shape == mask.shape
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(np.asarray(got)[~mask]).max() > 0  # pruned positions have a gradient


def test_an_ablated_unit_stays_zero_and_outputs_its_bias():
  kernels, biases, x, labels = _problem((32, 23, 13, 4), seed=3)
  masks = [np.asarray(fanin_mask(jax.random.PRNGKey(i), w.shape, 3)) for i, w in
           enumerate(kernels)]
  params, structure = condense_mlp(kernels, biases, masks)
  active = np.ones(23, bool)
  active[[4, 17]] = False
  params[0]["values"] = jnp.where(jnp.asarray(active)[:, None], params[0]["values"], 0)
  structure[0]["active"] = jnp.asarray(active)
  tx = optax.adam(LR)
  state = init_state(params, tx)
  step = jax.jit(make_train_step(tx))
  for s in range(20):
    state, _ = step(state, structure, x[s * 10:(s + 1) * 10], labels[s * 10:(s + 1) * 10])
  np.testing.assert_array_equal(state.params[0]["values"][~active], 0)
  assert np.abs(np.asarray(state.params[0]["values"][active])).min() > 0
  np.testing.assert_array_equal(state.opt_state[0].mu[0]["values"][~active], 0)
  # The masked dense model with those two columns pruned computes the same logits.
  dense = [(w * m, b) for w, b, m in zip(kernels, biases, masks)]
  pruned = [masks[0] & active[None, :]] + masks[1:]
  np.testing.assert_allclose(mlp_logits(params, structure, x[:5]),
                             _dense_logits(dense, pruned, x[:5]), atol=1e-5)
