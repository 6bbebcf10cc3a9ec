"""Masked training: the sparsity invariant, dense equivalence, determinism, resume."""
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.data.batching import batch_indices
from lotto.data.inputs import InputSpec
from lotto.runtime import runs
from lotto.runtime.checkpoints import Checkpointer
from lotto.jobs.experiment import create_experiment
from lotto.jobs.masked_train import run_train
from lotto.train.block import make_train_block
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import train_run
from lotto.train.step import cross_entropy
from lotto.train.trainer import Trainer
from tests.conftest import assert_no_moments_on_masked_weights


def _restore_final(workdir, exp):
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, payload = checkpointer.restore(checkpointer.latest_step(), exp.init_state())
  return state, payload


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_pruned_weights_stay_exactly_zero(tiny_config, tmp_path, optimizer):
  config = tiny_config
  config.optimizer.name = optimizer
  config.optimizer.learning_rate = 0.05 if optimizer == "momentum" else 1e-2
  config.optimizer.weight_decay = 1e-3
  config.train.duration = "100it"
  exp = create_experiment(config)
  params, _ = exp.init_params(jax.random.PRNGKey(0))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, exp.prunable, 0.3)
  initial = exp.init_state(masks)
  state, _ = train_run(Trainer(exp), str(tmp_path), initial)
  assert int(state.step) == 100
  for p, m, p0 in zip(jax.tree.leaves(state.params), jax.tree.leaves(masks),
                      jax.tree.leaves(initial.params)):
    assert not np.any(np.asarray(p)[~np.asarray(m)])          # exact zeros
    assert np.any(np.asarray(p)[np.asarray(m)] != np.asarray(p0)[np.asarray(m)])  # trained
  restored, _ = _restore_final(str(tmp_path), exp)
  for p, m in zip(jax.tree.leaves(restored.params), jax.tree.leaves(masks)):
    assert not np.any(np.asarray(p)[~np.asarray(m)])
  np.testing.assert_array_equal(restored.masks["hidden_0"]["kernel"], masks["hidden_0"]["kernel"])
  # The optimizer never builds momentum/moments on dead weights: every params-shaped leaf of
  # the optimizer state (the momentum trace; Adam's mu and nu), found by its key path.
  assert_no_moments_on_masked_weights(state.opt_state, masks,
                                      expected_trees=1 if optimizer == "momentum" else 2)


def test_all_true_mask_trains_like_dense_path(tiny_config):
  tiny_config.optimizer.name = "momentum"
  tiny_config.optimizer.learning_rate = 0.05
  exp = create_experiment(tiny_config)
  trainer = Trainer(exp)
  masked, _ = trainer.run_block(trainer.place(exp.init_state()), 50)
  # The oracle: plain dense SGD with momentum (no masks anywhere), same data order.
  inputs = InputSpec.of(exp.dataset)

  def dense_step(state, raw, labels):
    x = inputs(raw, jax.random.fold_in(state.rng, state.step))

    def loss(params):
      logits = exp.model.apply({"params": params}, x, train=True)
      return cross_entropy(logits, labels).mean(), logits

    (value, _), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    direction, opt_state = exp.tx.update(grads, state.opt_state, state.params)
    lr = exp.schedule(state.step)
    params = jax.tree.map(lambda p, u: p - lr * u, state.params, direction)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), {
        "loss": value, "accuracy": value}

  indices = batch_indices(exp.seed, len(exp.dataset.x_train), exp.batch_size, 0, 50)
  dense, _ = make_train_block(dense_step, "scan")(
      exp.init_state(), jnp.asarray(exp.dataset.x_train), jnp.asarray(exp.dataset.y_train),
      jnp.asarray(indices))
  # Multiplying by an all-True mask is exact in float32 (x * 1 == x, x + 0 == x),
  # and on this CPU backend XLA produces bit-identical params.
  for a, b in zip(jax.tree.leaves(dense.params), jax.tree.leaves(masked.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_same_seed_same_results_different_seed_differs(tiny_config, tmp_path):
  first = run_train(tiny_config, str(tmp_path / "a"))
  second = run_train(tiny_config, str(tmp_path / "b"))
  assert first["history"] == second["history"]
  exp = create_experiment(tiny_config)
  pa, _ = _restore_final(str(tmp_path / "a"), exp)
  pb, _ = _restore_final(str(tmp_path / "b"), exp)
  for a, b in zip(jax.tree.leaves(pa.params), jax.tree.leaves(pb.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  tiny_config.seed = 1
  third = run_train(tiny_config, str(tmp_path / "c"))
  assert third["history"] != first["history"]
  pc, _ = _restore_final(str(tmp_path / "c"), create_experiment(tiny_config))
  assert not np.array_equal(np.asarray(pc.params["output"]["kernel"]),
                            np.asarray(pa.params["output"]["kernel"]))


class _Killed(Exception):
  pass


def test_kill_and_resume_matches_uninterrupted(tiny_config, tmp_path):
  tiny_config.train.duration = "60it"
  straight = run_train(tiny_config, str(tmp_path / "straight"))

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):
    run_train(tiny_config, str(tmp_path / "resumed"), hooks=[AtStepsHook.of(crash, [30])])
  assert not os.path.exists(tmp_path / "resumed" / runs.RESULTS_FILE)
  resumed = run_train(tiny_config, str(tmp_path / "resumed"))
  assert resumed["history"] == straight["history"]
  assert resumed["final_test_accuracy"] == straight["final_test_accuracy"]
  exp = create_experiment(tiny_config)
  a, _ = _restore_final(str(tmp_path / "straight"), exp)
  b, _ = _restore_final(str(tmp_path / "resumed"), exp)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_results_and_early_stopping(tiny_config, tmp_path):
  started = time.perf_counter()
  results = run_train(tiny_config, str(tmp_path))
  elapsed = time.perf_counter() - started
  saved = runs.read_json(str(tmp_path / runs.RESULTS_FILE))
  assert saved["final_test_accuracy"] == results["final_test_accuracy"]
  history = results["history"]
  assert [h["step"] for h in history] == [10, 20, 30, 40]
  best = min(history, key=lambda h: h["val_loss"])
  assert results["early_stop_step"] == best["step"]
  assert results["early_stop_test_accuracy"] == best["test_accuracy"]
  assert results["density"] == 1.0 and results["steps"] == 40
  assert set(results["layer_densities"]) == {"hidden_0/kernel", "hidden_1/kernel", "output/kernel"}
  assert 0 < results["wall_time_s"] <= elapsed  # seconds of training, within the call


def test_kept_checkpoints_include_rewind_point(tiny_config, tmp_path):
  tiny_config.train.save_at = ("5it",)
  run_train(tiny_config, str(tmp_path))
  steps = Checkpointer(str(tmp_path / "checkpoints")).steps()
  assert steps == [5, 40]  # resume point 20 was superseded; 5 and the end are kept


def test_augmented_cifar_step_runs_under_mock_data(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from tests.conftest import load_config  # pylint: disable=import-outside-toplevel
  config = load_config("cifar10_resnet20")
  config.model.name = "lenet5"
  config.data.validation_size = 8
  config.data.batch_size = 8
  config.train.duration = "4it"
  config.train.eval_every = "2it"
  config.train.checkpoint_every = "2it"
  config.schedule.drops = ("1ep",)
  config.train.verbose = 0
  with tfds.testing.mock_data(num_examples=40):
    results = run_train(config, str(tmp_path))
  assert results["steps"] == 4 and np.isfinite(results["final_test_loss"])
