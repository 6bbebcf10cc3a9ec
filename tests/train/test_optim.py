"""Optimizers and LR schedules (including starting at an arbitrary step)."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lotto.train import optim
from lotto.core.durations import parse_duration
from lotto.core.errors import ConfigError


def test_durations():
  assert parse_duration("500it", 100) == 500
  assert parse_duration("2ep", 100) == 200
  assert parse_duration(0, 100) == 0
  for bad in ("500", "2 epochs", "-3it", "ep", "1.5ep"):
    with pytest.raises(ConfigError, match="cannot parse duration"):
      parse_duration(bad, 100)


def test_step_schedule_with_drops_in_epochs():
  schedule = optim.create_schedule("step", 0.1, 1600, 10, drops=("80ep", "120ep"))
  values = [float(schedule(s)) for s in (0, 799, 800, 1199, 1200, 1599)]
  np.testing.assert_allclose(values, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_cosine_and_warmup():
  schedule = optim.create_schedule("cosine", 1.0, 110, 1, warmup="10it")
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(9)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-7)


def test_schedule_is_a_function_of_the_global_step():
  # Rewinding to step k: the first update uses schedule(k), whatever came before.
  schedule = optim.create_schedule("step", 0.1, 100, 10, drops=("3ep",))
  assert float(schedule(jnp.asarray(30))) == pytest.approx(0.01)


def test_bad_schedule_and_lr():
  with pytest.raises(ConfigError, match="constant, step, cosine"):
    optim.create_schedule("linear", 0.1, 10, 1)
  for lr in (0.0, -1.0, float("nan")):
    with pytest.raises(ConfigError, match="learning_rate must be > 0"):
      optim.create_schedule("constant", lr, 10, 1)


def test_unknown_optimizer_lists_choices():
  with pytest.raises(ConfigError, match="sgd, momentum, nesterov, adam, adamw"):
    optim.create_optimizer("rmsprop")


def test_weight_decay_skips_bias_and_is_coupled_for_sgd():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
  tx = optim.create_optimizer("sgd", weight_decay=0.5, skip_bias_and_norm=True)
  direction, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(direction["kernel"], 0.5)
  np.testing.assert_allclose(direction["bias"], 0.0)
  tx = optim.create_optimizer("sgd", weight_decay=0.5, skip_bias_and_norm=False)
  direction, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(direction["bias"], 0.5)


def test_momentum_matches_optax_sgd():
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.3, 0.1])}
  ours = optim.create_optimizer("nesterov", momentum=0.9)
  reference = optax.sgd(0.1, momentum=0.9, nesterov=True)
  s_ours, s_ref = ours.init(params), reference.init(params)
  for _ in range(3):
    d, s_ours = ours.update(grads, s_ours, params)
    u, s_ref = reference.update(grads, s_ref, params)
    np.testing.assert_allclose(-0.1 * d["w"], u["w"], rtol=1e-6)
