"""Condensed execution through the Trainer: the same numbers as masked training, and drop and
grow that keeps the constant fan-in with grown weights and moments at zero."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.errors import ConfigError
from lotto.core.fanin import fanin_masks
from lotto.core.masks import select_prunable
from lotto.core.rng import purpose_key
from lotto.dynamic.update import init_mask_state
from lotto.jobs.condensed_execution import condensed_setup, condensed_starts
from lotto.jobs.sparse_train import build_sparse_run
from lotto.models import create_model, init_variables
from lotto.jobs.condensed_execution import layout_of
from lotto.train.condensed_state import dense_masks, dense_params
from lotto.train.trainer import Trainer


def _setup(config, method, density=0.2, steps="200it"):
  """(exp, settings, masked update, masked start state, condensed setup, condensed start)."""
  config.mode, config.sparse.method, config.sparse.density = "sparse_train", method, density
  config.train.duration = steps
  exp, settings, update = build_sparse_run(config)
  masks = fanin_masks(purpose_key(exp.seed, "sparse_mask"), exp.params_shape, exp.prunable,
                      density)
  state = exp.init_state(masks)
  state = state.replace(mask_state=init_mask_state(update, state.params, state.masks))
  config.sparse.execution = "condensed"
  condensed = condensed_setup(config, exp, settings)
  start = condensed_starts([state], condensed, exp)[0]
  return exp, settings, update, state, condensed, start


def _assert_same_params(masked, condensed_state, layout, atol):
  dense = dense_params(condensed_state, layout)
  for layer, leaves in dense.items():
    for name, value in leaves.items():
      np.testing.assert_allclose(np.asarray(masked.params[layer][name]), value, rtol=0,
                                 atol=atol, err_msg=f"{layer}/{name}")


def _run_both(exp, update, state, condensed, start, steps):
  masked_trainer = Trainer(exp, mask_update=update)
  condensed_trainer = Trainer(exp, mask_update=condensed.update, layout=condensed.layout)
  masked, masked_metrics = masked_trainer.run_block(masked_trainer.place(state), steps)
  final, metrics = condensed_trainer.run_block(condensed_trainer.place(start), steps)
  return masked_trainer, condensed_trainer, masked, masked_metrics, final, metrics


@pytest.mark.slow
def test_condensed_static_steps_equal_masked_steps(tiny_config):
  exp, _, update, state, condensed, start = _setup(tiny_config, "static", steps="40it")
  assert condensed.layout.condensed == (True, True, True)
  masked_t, condensed_t, masked, mm, final, cm = _run_both(exp, update, state, condensed,
                                                           start, 20)
  np.testing.assert_allclose(cm["loss"], mm["loss"], rtol=0, atol=2e-6)
  np.testing.assert_array_equal(cm["accuracy"], mm["accuracy"])
  _assert_same_params(masked, final, condensed.layout, atol=2e-6)
  # The masks are those the run started from; the Adam moments exist for kept weights only.
  for layer in ("hidden_0", "hidden_1", "output"):
    np.testing.assert_array_equal(dense_masks(final, condensed.layout)[layer]["kernel"],
                                  np.asarray(state.masks[layer]["kernel"]))
  mu, nu = _adam_moments(final.opt_state)
  assert mu["hidden_0"]["values"].shape == nu["hidden_0"]["values"].shape == (32, 8)
  assert condensed_t.evaluate(final, "test") == pytest.approx(
      masked_t.evaluate(masked, "test"), abs=1e-5)


@pytest.mark.slow
def test_condensed_static_run_equals_masked_over_300_steps(tiny_config):
  exp, _, update, state, condensed, start = _setup(tiny_config, "static", steps="300it")
  masked_t, condensed_t, masked, mm, final, cm = _run_both(exp, update, state, condensed,
                                                           start, 300)
  # Float32 summation order only: measured 7e-7 after 200 steps.
  _assert_same_params(masked, final, condensed.layout, atol=2e-5)
  np.testing.assert_array_equal(cm["accuracy"], mm["accuracy"])
  for split in ("val", "test"):
    assert condensed_t.evaluate(final, split)[0]["accuracy"] == \
        masked_t.evaluate(masked, split)[0]["accuracy"]


def _adam_moments(opt_state):
  found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu"))
           if hasattr(s, "mu")]
  assert len(found) == 1
  return found[0].mu, found[0].nu


@pytest.mark.slow
@pytest.mark.parametrize("method", ["set", "srigl"])
def test_condensed_update_keeps_fan_in_and_zeroes_grown_weights_and_moments(tiny_config,
                                                                           method):
  exp, settings, _, _, condensed, start = _setup(tiny_config, method, density=0.25,
                                                 steps="40it")
  trainer = Trainer(exp, mask_update=condensed.update, layout=condensed.layout)
  first = settings.update_every
  before, _ = trainer.run_block(trainer.place(start), first)
  before = jax.tree.map(np.asarray, before)
  after, _ = trainer.run_block(trainer.place(before), 1)   # the update step
  after = jax.tree.map(np.asarray, after)
  mu, nu = _adam_moments(after.opt_state)
  fraction = 0.15 * (1 + np.cos(np.pi * first / settings.stop))   # RigL's cosine, alpha 0.3
  for index, layer in enumerate(condensed.layout.layers):
    if not condensed.layout.condensed[index]:
      continue
    old, new = before.masks[layer]["indices"], after.masks[layer]["indices"]
    out, k = new.shape
    fan_in = condensed.layout.in_features[index]
    assert all(len(set(row)) == k for row in new)            # k distinct inputs per unit
    replaced = old != new
    drops = int(np.round(fraction * k))
    assert (replaced.sum(axis=1) == min(drops, fan_in - k)).all()
    # Grown slots: weight 0, Adam moments 0; no grown input was held before the update.
    assert (after.params[layer]["values"][replaced] == 0).all()
    assert (mu[layer]["values"][replaced] == 0).all() and (nu[layer]["values"][replaced] == 0).all()
    for o in range(out):
      assert not set(new[o][replaced[o]]) & set(old[o])
    # The fan-out table lists exactly the slots of every input; width is the largest fan-out.
    table, width = after.masks[layer]["fanout"], int(after.masks[layer]["width"])
    counts = np.bincount(new.reshape(-1), minlength=fan_in)
    assert width == counts.max() and table.shape == (fan_in, out)
    for i in range(fan_in):
      listed = sorted(s for s in table[i] if s < out * k)
      assert listed == sorted(np.flatnonzero(new.reshape(-1) == i).tolist())


def test_condensed_refuses_a_conv_model_naming_the_layer():
  model = create_model("lenet5", 10)
  params, _ = init_variables(model, jax.random.PRNGKey(0), (28, 28, 1))
  shapes = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  with pytest.raises(ConfigError) as error:
    layout_of(model, shapes, select_prunable(params), "lenet5")
  message = str(error.value)
  assert "\n" not in message and "Conv layer" in message and "lenet5" in message
  assert "sparse.execution='masked'" in message


def test_condensed_dense_tw_equals_the_static_table():
  from lotto.sparse.condensed import fanout_slots, fanout_table  # pylint: disable=import-outside-toplevel
  from lotto.sparse.condensed_ops import condensed_dense_t, condensed_dense_tw  # pylint: disable=import-outside-toplevel
  key = jax.random.PRNGKey(3)
  mask = np.asarray(fanin_masks(key, {"w": jnp.zeros((9, 7))}, {"w": True}, 3 / 9)["w"])
  indices = jnp.asarray(np.nonzero(mask.T)[1].reshape(7, 3), jnp.int32)
  values = jax.random.normal(jax.random.fold_in(key, 1), (7, 3))
  xt = jax.random.normal(jax.random.fold_in(key, 2), (9, 5))
  tight = fanout_table(indices, 9)
  wide = fanout_slots(indices, 9, 7)
  width = jnp.asarray(tight.shape[1], jnp.int32)

  def loss(fn, *args):
    return lambda x, v: (fn(x, indices, v, *args) ** 2).sum()

  expected = jax.grad(loss(condensed_dense_t, tight), argnums=(0, 1))(xt, values)
  got = jax.grad(loss(condensed_dense_tw, wide, width), argnums=(0, 1))(xt, values)
  for a, b in zip(expected, got):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_condensed_srigl_run_equals_masked_srigl(tiny_config):
  # SRigL leaves the output layer dense: it runs as a plain matmul in both forms.
  tiny_config.sparse.update_every = "20it"
  exp, _, update, state, condensed, start = _setup(tiny_config, "srigl", density=0.25,
                                                   steps="200it")
  assert condensed.layout.condensed == (True, True, False)
  masked_t, condensed_t, masked, mm, final, cm = _run_both(exp, update, state, condensed,
                                                           start, 200)
  assert condensed.update.due_steps == tuple(range(20, 150, 20)) == update.due_steps
  for layer in ("hidden_0", "hidden_1"):   # the same drops and growths at every update
    np.testing.assert_array_equal(dense_masks(final, condensed.layout)[layer]["kernel"],
                                  np.asarray(masked.masks[layer]["kernel"]))
  _assert_same_params(masked, final, condensed.layout, atol=2e-5)
  np.testing.assert_array_equal(cm["accuracy"], mm["accuracy"])
  for split in ("val", "test"):
    assert condensed_t.evaluate(final, split)[0]["accuracy"] == \
        masked_t.evaluate(masked, split)[0]["accuracy"]
