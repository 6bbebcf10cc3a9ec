"""OBD: Hutchinson's Hessian diagonal against the exact one (jax.hessian) on a tiny net, exact
on a diagonal Hessian, and the saliency 0.5 * h_ii * w^2 as a registered score."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.scores import ScoringContext, hutchinson_hessian_diagonal, make_scorer, obd_saliency
from lotto.models import create_model, init_variables


def test_a_diagonal_hessian_is_recovered_exactly_with_one_probe():
  a = jnp.asarray([[3.0, -1.0], [0.5, 2.0]])
  b = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])
  w = {"k": jnp.asarray([[0.1, -0.2], [0.3, 0.4]])}
  loss = lambda p: jnp.sum(0.5 * a * p["k"] ** 2 + b * p["k"])  # noqa: E731; H = diag(a)
  for probes in (1, 3):
    h = hutchinson_hessian_diagonal(loss, w, jax.random.PRNGKey(0), probes)
    np.testing.assert_array_equal(h["k"], a)
  saliency = obd_saliency(loss, w, jax.random.PRNGKey(0), probes=1)
  np.testing.assert_allclose(saliency["k"], 0.5 * np.asarray(a) * np.asarray(w["k"]) ** 2,
                             rtol=1e-6)


def _tiny_net():
  key1, key2, key3 = jax.random.split(jax.random.PRNGKey(3), 3)
  params = {"w1": jax.random.normal(key1, (3, 4)), "w2": jax.random.normal(key2, (4, 2))}
  x = jax.random.normal(key3, (8, 3))
  y = jnp.asarray([0, 1, 1, 0, 1, 0, 0, 1])

  def loss(p):
    logits = jnp.tanh(x @ p["w1"]) @ p["w2"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), y])

  return params, loss


def test_hutchinson_matches_the_exact_hessian_diagonal_within_its_standard_error():
  params, loss = _tiny_net()
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  hessian = np.asarray(jax.hessian(lambda v: loss(unravel(v)))(flat), np.float64)
  exact = np.diag(hessian)
  probes = 2000
  estimate = jax.flatten_util.ravel_pytree(
      hutchinson_hessian_diagonal(loss, params, jax.random.PRNGKey(0), probes))[0]
  # One probe's variance at i is sum_{j != i} H_ij^2; the mean of P probes has 1/P of it.
  stderr = np.sqrt((np.sum(hessian ** 2, axis=1) - exact ** 2) / probes)
  assert (stderr > 0).all()  # the net's Hessian is not diagonal: the test can fail
  np.testing.assert_array_less(np.abs(np.asarray(estimate) - exact), 5 * stderr + 1e-6)
  # With 10 probes the estimate is still unbiased but noisy: it differs from the exact one.
  few = jax.flatten_util.ravel_pytree(
      hutchinson_hessian_diagonal(loss, params, jax.random.PRNGKey(0), 10))[0]
  assert not np.allclose(np.asarray(few), exact, atol=1e-4)


def test_bad_probe_count():
  params, loss = _tiny_net()
  with pytest.raises(ValueError, match="probes must be a positive integer"):
    hutchinson_hessian_diagonal(loss, params, jax.random.PRNGKey(0), 0)


def test_obd_score_is_half_h_w_squared_of_the_masked_net_on_the_batch():
  model = create_model("mlp", 3, widths=(5,))
  params, stats = init_variables(model, jax.random.PRNGKey(0), (4,))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, masks_lib.select_prunable(params),
                                 0.5)
  x = jax.random.normal(jax.random.PRNGKey(2), (6, 4))
  y = jnp.asarray([0, 1, 2, 0, 1, 2])
  key = jax.random.PRNGKey(5)
  scores = make_scorer("obd", ScoringContext(model.apply, (4,), obd_probes=7))(
      params, masks, stats, (x, y), key)

  def loss(p):  # the oracle, written out: mean cross-entropy of the masked net
    logits = model.apply({"params": p}, x, train=False)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), y])

  masked = masks_lib.apply(params, masks)
  h = hutchinson_hessian_diagonal(loss, masked, key, 7)
  for s, w, hd, m in zip(jax.tree.leaves(scores), jax.tree.leaves(masked), jax.tree.leaves(h),
                         jax.tree.leaves(masks)):
    np.testing.assert_allclose(s, 0.5 * np.asarray(hd) * np.asarray(w) ** 2, rtol=1e-5,
                               atol=1e-9)
    assert not np.asarray(s)[~np.asarray(m)].any()  # pruned weights score 0
