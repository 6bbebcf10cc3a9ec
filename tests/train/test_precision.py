"""Mixed precision (`train.precision = "bfloat16"`): the forward and backward pass in
bfloat16, everything stored in float32, pruned weights exactly zero, the loss falls."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError
from lotto.jobs.experiment import create_experiment
from lotto.train import precision as precision_lib
from lotto.train.step import make_train_step
from lotto.train.trainer import Trainer
from lotto.data.inputs import InputSpec
from tests.conftest import assert_no_moments_on_masked_weights


def _masked_state(exp):
  params, _ = exp.init_params(jax.random.PRNGKey(0))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, exp.prunable, 0.3)
  return exp.init_state(masks), masks


def test_bfloat16_training_keeps_pruned_weights_at_zero_and_state_in_float32(tiny_config):
  tiny_config.train.precision = "bfloat16"
  tiny_config.optimizer.learning_rate = 1e-2
  exp = create_experiment(tiny_config)
  assert exp.precision == "bfloat16"
  trainer = Trainer(exp)
  state, masks = _masked_state(exp)
  state, first = trainer.run_block(trainer.place(state), 10)
  for _ in range(3):
    state, last = trainer.run_block(state, 10)
  state = jax.tree.map(np.asarray, state)
  # The loss falls: the mean of the last 10 steps is well below the first 10's (MNIST-1D
  # from 2.25 to 2.05 here), and ends where float32 training ends, give or take rounding.
  assert np.mean(last["loss"]) < np.mean(first["loss"]) - 0.1
  tiny_config.train.precision = "float32"
  exp32 = create_experiment(tiny_config)
  trainer32 = Trainer(exp32)
  state32, _ = trainer32.run_block(trainer32.place(_masked_state(exp32)[0]), 40)
  last32 = trainer32.evaluate(state32, "val")[0]["loss"]
  for name, p, m in zip(masks_lib.leaf_names(state.params), jax.tree.leaves(state.params),
                        jax.tree.leaves(state.masks)):
    assert p.dtype == np.float32, name  # stored in float32
    assert not np.any(p[~m]), name  # a pruned weight is exactly zero
  for now, before in zip(jax.tree.leaves(state.masks), jax.tree.leaves(masks)):
    np.testing.assert_array_equal(now, before)
  assert all(leaf.dtype in (np.float32, np.int32) for leaf in jax.tree.leaves(state.opt_state))
  assert_no_moments_on_masked_weights(state.opt_state, state.masks, expected_trees=2)
  val = trainer.evaluate(state, "val")[0]
  assert val["loss"] != last32 and abs(val["loss"] - last32) < 0.05


def _dot_operand_dtypes(exp, precision):
  step = make_train_step(exp.model.apply, exp.tx, exp.schedule, InputSpec.of(exp.dataset),
                         precision=precision)
  state, _ = _masked_state(exp)
  x = jnp.asarray(exp.dataset.x_train[:8])
  y = jnp.asarray(exp.dataset.y_train[:8])
  jaxpr = jax.make_jaxpr(step)(state, x, y)
  dtypes = set()

  def visit(inner):
    for eqn in inner.eqns:
      if eqn.primitive.name == "dot_general":
        dtypes.add(tuple(str(v.aval.dtype) for v in eqn.invars))
      for param in eqn.params.values():
        if hasattr(param, "jaxpr"):  # pjit, custom_jvp and the like hold their body here
          visit(param.jaxpr)
  visit(jaxpr.jaxpr)
  return dtypes


def test_the_matmuls_run_in_the_compute_dtype(tiny_config):
  exp = create_experiment(tiny_config)
  # Forward and backward: every matmul of the step multiplies bfloat16 by bfloat16.
  assert _dot_operand_dtypes(exp, "bfloat16") == {("bfloat16", "bfloat16")}
  assert _dot_operand_dtypes(exp, "float32") == {("float32", "float32")}


def test_cast_floats_keeps_integer_and_bool_leaves():
  tree = {"w": jnp.ones((2,), jnp.float32), "i": jnp.arange(2), "b": jnp.array([True])}
  cast = precision_lib.cast_floats(tree, jnp.bfloat16)
  assert (cast["w"].dtype, cast["i"].dtype, cast["b"].dtype) == (
      jnp.bfloat16, jnp.arange(2).dtype, jnp.bool_)


def test_an_unknown_precision_is_one_line(tiny_config):
  tiny_config.train.precision = "float16"
  with pytest.raises(ConfigError, match=r"^unknown train.precision 'float16'; valid choices: "
                                        r"float32, bfloat16$"):
    create_experiment(tiny_config)
