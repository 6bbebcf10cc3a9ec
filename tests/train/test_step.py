"""The mask-update seam of the train step: dense gradient in, new mask at exactly step k,
zero params and zero optimizer moments on every masked weight afterwards."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.data.batching import batch_indices
from lotto.dynamic import init_mask_state
from lotto.data.inputs import InputSpec
from lotto.jobs.experiment import create_experiment
from lotto.train.hooks import AtStepsHook
from lotto.train.loop import train_run
from lotto.train.step import cross_entropy
from lotto.train.trainer import Trainer
from tests.conftest import assert_no_moments_on_masked_weights

KERNELS = ("hidden_0", "hidden_1", "output")
SWAP_STEP = 5


@dataclasses.dataclass(frozen=True)
class SwapFirst:
  """At step k, in every kernel: prune the first surviving weight, grow the first pruned one.

  Its state records the dense gradient it saw at each grown position.
  """
  step: int
  prunable: dict

  @property
  def due_steps(self):
    return (self.step,)

  def init_state(self, params, masks):
    del params, masks
    return {"grown_gradient": {n: jnp.zeros(()) for n in KERNELS},
            "updates": jnp.zeros((), jnp.int32)}

  def update(self, inputs, state):
    masks, dense_grads = inputs.masks, inputs.dense_grads
    new_masks, seen = dict(masks), {}
    for name in KERNELS:
      flat = masks[name]["kernel"].ravel()
      drop, grow = jnp.argmax(flat), jnp.argmax(~flat)
      flat = flat.at[drop].set(False).at[grow].set(True)
      new_masks[name] = {**masks[name], "kernel": flat.reshape(masks[name]["kernel"].shape)}
      seen[name] = dense_grads[name]["kernel"].ravel()[grow]
    return new_masks, {"grown_gradient": seen, "updates": state["updates"] + 1}


def moment_leaves_of(opt_state, name):
  return [l for p, l in jax.tree_util.tree_flatten_with_path(opt_state)[0]
          if masks_lib.key_path_name(p[-2:]) == name]


def _first(mask, value):
  return int(np.flatnonzero(np.asarray(mask).ravel() == value)[0])


@pytest.mark.parametrize("optimizer, weight_decay", [
    ("momentum", 1e-3), ("adam", 0.0), ("adamw", 1e-2)])
def test_mask_update_sees_the_dense_gradient_and_leaves_nothing_on_masked_weights(
    tiny_config, optimizer, weight_decay):
  tiny_config.optimizer.name = optimizer
  tiny_config.optimizer.weight_decay = weight_decay
  tiny_config.optimizer.learning_rate = 0.05 if optimizer == "momentum" else 1e-2
  tiny_config.train.loop = "step"  # one compiled step for blocks of any length
  exp = create_experiment(tiny_config)
  update = SwapFirst(SWAP_STEP, exp.prunable)
  trainer = Trainer(exp, mask_update=update)
  params, _ = exp.init_params(jax.random.PRNGKey(0))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, exp.prunable, 0.5)
  state = exp.init_state(masks)
  state = state.replace(mask_state=init_mask_state(update, state.params, state.masks))
  trees = 1 if optimizer == "momentum" else 2

  # Steps 0..4: the update is not due; the masks stay.
  state, _ = trainer.run_block(trainer.place(state), SWAP_STEP)
  before = jax.tree.map(np.asarray, state)
  for name in KERNELS:
    np.testing.assert_array_equal(before.masks[name]["kernel"], masks[name]["kernel"])
  assert int(before.mask_state["method"]["updates"]) == 0
  dropped = {n: _first(before.masks[n]["kernel"], True) for n in KERNELS}
  grown = {n: _first(before.masks[n]["kernel"], False) for n in KERNELS}
  # The weight about to be dropped carries momentum (or Adam moments) now.
  moment_leaves = moment_leaves_of(before.opt_state, "hidden_0/kernel")
  assert len(moment_leaves) == trees
  assert all(l.ravel()[dropped["hidden_0"]] != 0 for l in moment_leaves)

  # The oracle: the gradient of step 5's loss with respect to the effective weights.
  inputs = InputSpec.of(exp.dataset)
  index = batch_indices(exp.seed, len(exp.dataset.x_train), exp.batch_size, SWAP_STEP, 1)[0]
  x = inputs(jnp.asarray(exp.dataset.x_train[index]),
             jax.random.fold_in(before.rng, SWAP_STEP))
  effective = masks_lib.apply(before.params, before.masks)
  oracle = jax.grad(lambda w: cross_entropy(
      exp.model.apply({"params": w}, x, train=True),
      jnp.asarray(exp.dataset.y_train[index])).mean())(effective)

  # Step 5: the update runs, once.
  state, _ = trainer.run_block(trainer.place(state), 1)
  after = jax.tree.map(np.asarray, state)
  assert int(after.mask_state["method"]["updates"]) == 1
  for name in KERNELS:
    seen = float(after.mask_state["method"]["grown_gradient"][name])
    want = float(np.asarray(oracle[name]["kernel"]).ravel()[grown[name]])
    assert seen != 0.0  # the dense gradient is nonzero where the weight was pruned
    assert seen == pytest.approx(want, rel=1e-5, abs=1e-8)
    changed = np.flatnonzero(after.masks[name]["kernel"].ravel()
                             != before.masks[name]["kernel"].ravel())
    assert changed.tolist() == sorted([dropped[name], grown[name]])
    assert after.params[name]["kernel"].ravel()[dropped[name]] == 0.0
    assert after.params[name]["kernel"].ravel()[grown[name]] == 0.0  # grown: starts at 0
  assert_no_moments_on_masked_weights(after.opt_state, after.masks, expected_trees=trees)
  for leaf in moment_leaves_of(after.opt_state, "hidden_0/kernel"):  # grown: no moments
    assert leaf.ravel()[grown["hidden_0"]] == 0.0
  log = after.mask_state["log"]  # one row: the step, the survivors, the 2 flips per kernel
  assert log["step"].tolist() == [SWAP_STEP]
  assert log["changed"].tolist() == [[2, 2, 2]]
  assert log["alive"].tolist() == [[int(masks[n]["kernel"].sum()) for n in KERNELS]]

  # Steps 6..19: no further update; the invariant holds at every block's end.
  for _ in range(2):
    state, _ = trainer.run_block(state, 7)
    now = jax.tree.map(np.asarray, state)
    assert int(now.mask_state["method"]["updates"]) == 1
    for name in KERNELS:
      np.testing.assert_array_equal(now.masks[name]["kernel"], after.masks[name]["kernel"])
    for p, m in zip(jax.tree.leaves(now.params), jax.tree.leaves(now.masks)):
      assert not np.any(p[~m])
    assert_no_moments_on_masked_weights(now.opt_state, now.masks, expected_trees=trees)


class _Killed(Exception):
  pass


def test_masks_and_mask_state_survive_kill_and_resume(tiny_config, tmp_path):
  tiny_config.train.loop = "step"
  exp = create_experiment(tiny_config)  # 40 steps, checkpoints at 20 and 40
  update = SwapFirst(15, exp.prunable)
  trainer = Trainer(exp, mask_update=update)
  params, _ = exp.init_params(jax.random.PRNGKey(0))
  masks = masks_lib.random_masks(jax.random.PRNGKey(1), params, exp.prunable, 0.5)
  start = exp.init_state(masks)
  start = start.replace(mask_state=init_mask_state(update, start.params, start.masks))
  straight, _ = train_run(trainer, str(tmp_path / "straight"), start)

  def crash(step, state):
    raise _Killed()

  with pytest.raises(_Killed):  # killed at 30: the step-20 checkpoint holds the swapped mask
    train_run(trainer, str(tmp_path / "resumed"), start, hooks=[AtStepsHook.of(crash, [30])])
  resumed, _ = train_run(trainer, str(tmp_path / "resumed"), start)
  assert int(resumed.mask_state["method"]["updates"]) == 1  # restored, not re-initialised (0)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert any(bool(np.any(np.asarray(a) != np.asarray(b)))
             for a, b in zip(jax.tree.leaves(resumed.masks), jax.tree.leaves(masks)))
