"""SRigL on masks (`lotto.dynamic.srigl_masks`): per-unit selection with written-out
expected masks, drop and grow and neuron ablation on written-out layers, and equality with
the condensed-form SRigL (`srigl_ablation.srigl_update`) over successive random updates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.fanin import fan_in_count, fanin_mask
from lotto.dynamic.srigl_ablation import srigl_update
from lotto.dynamic.srigl_masks import (ConstantFanInRegrow, largest_per_unit, smallest_per_unit,
                                       srigl_layer)
from lotto.dynamic.update import UpdateInputs

_layer = jax.jit(srigl_layer, static_argnums=5)


def _column(values):
  return jnp.asarray(values, jnp.float32)[:, None]


def test_largest_per_unit_counts_and_ties():
  scores = _column([3.0, 1.0, 3.0, -2.0])
  every = jnp.ones((4, 1), bool)
  pick = lambda cand, count: np.flatnonzero(np.asarray(
      largest_per_unit(scores, cand, jnp.asarray([count]))[:, 0])).tolist()
  assert pick(every, 2) == [0, 2]
  assert pick(every, 1) == [0]  # tie at 3.0: the lower row
  assert pick(every, 3) == [0, 1, 2]  # -2.0 ranks below 1.0
  assert pick(every, 0) == []
  assert pick(every.at[0, 0].set(False), 2) == [1, 2]  # 3.0 and 1.0
  assert pick(every.at[0, 0].set(False), 9) == [1, 2, 3]  # all candidates, no more
  # Columns are independent, each with its own count.
  two = jnp.concatenate([scores, -scores], axis=1)
  chosen = np.asarray(largest_per_unit(two, jnp.ones((4, 2), bool), jnp.asarray([1, 2])))
  assert chosen[:, 0].tolist() == [True, False, False, False]
  assert chosen[:, 1].tolist() == [False, True, False, True]  # -1.0 and 2.0


def test_smallest_per_unit_breaks_ties_by_the_higher_row():
  weights = _column([0.5, -0.1, 0.1, 0.7])
  pick = lambda count: np.flatnonzero(np.asarray(
      smallest_per_unit(weights, jnp.ones((4, 1), bool), jnp.asarray([count]))[:, 0])).tolist()
  assert pick(1) == [2]  # |-0.1| == |0.1|: the higher row goes first
  assert pick(2) == [1, 2]
  assert pick(3) == [0, 1, 2]


def test_drop_and_grow_per_unit_on_a_written_out_layer():
  # fan_in 4, two units, k = 2, fraction 0.5: n = round(1.0) = 1 per unit.
  mask = jnp.asarray([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
  weights = jnp.asarray([[0.5, 0.0], [0.0, 0.3], [-0.1, 0.0], [0.0, -0.3]])
  grads = jnp.asarray([[7.0, 0.4], [0.2, 8.0], [5.0, -0.4], [-0.9, 9.0]])
  new = np.asarray(_layer(mask, weights, grads, 0.5, jnp.asarray(4), 0.0))
  # Unit 0 drops input 2 (|-0.1| < 0.5) and grows input 3 (|-0.9| > 0.2; input 2 has the
  # largest |g| but was dropped in this update, input 0 is held). Unit 1 drops input 3 (a
  # tie at 0.3: the higher input) and grows input 0 (a tie at 0.4: the lower input).
  np.testing.assert_array_equal(new, [[1, 1], [0, 1], [0, 0], [1, 0]])
  np.testing.assert_array_equal(new.sum(axis=0), [2, 2])  # the fan-in stays 2


def test_neuron_ablation_on_a_written_out_layer():
  # fan_in 4, three units with k = 2, budget 6, fraction 0.5 (n = 1), gamma = 1.
  mask = jnp.asarray([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], bool)
  weights = jnp.asarray([[0.9, 0, 0], [0.8, 0.7, 0], [0, 0.01, 0.02], [0, 0, 0.03]])
  grads = jnp.asarray([[0, 0.5, 0.04], [0, 0, 0.03], [0.6, 0, 0], [0.1, 0.05, 0]])
  new = np.asarray(_layer(mask, weights, grads, 0.5, jnp.asarray(6), 1.0))
  # Salient: the 3 largest |w| (0.9, 0.8 of unit 0; 0.7 of unit 1) and the 3 largest |g| of
  # free positions (0.6, 0.1 of unit 0; 0.5 of unit 1): 4, 2, 0 per unit. Unit 2 has fewer
  # than gamma * k = 2 and is ablated (2 units stay >= ceil(6 / 4)). Units 0 and 1 drop
  # inputs 1 and 2 and grow inputs 2 and 0, then widen to k' = min(4, 6 // 2) = 3 by
  # input 3 (the best input never held; inputs 1 and 2, dropped now, come last).
  np.testing.assert_array_equal(new, [[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]])


def _condensed(mask: np.ndarray, weights: np.ndarray):
  """(values, indices, active) of a mask whose active units hold k inputs each (ablated
  units get inputs 0..k-1 with value 0: never read)."""
  counts = mask.sum(axis=0)
  k = int(counts.max())
  indices = np.stack([np.flatnonzero(mask[:, o]) if counts[o] else np.arange(k)
                      for o in range(mask.shape[1])])
  values = np.take_along_axis(weights.T, indices, axis=1) * (counts > 0)[:, None]
  return jnp.asarray(values), jnp.asarray(indices, jnp.int32), jnp.asarray(counts > 0)


@pytest.mark.parametrize("fan_in, out, density, gamma", [
    (12, 7, 0.3, 0.0), (12, 7, 0.3, 0.9), (9, 5, 0.1, 0.0),  # k = 1
    (30, 11, 0.5, 0.6), (16, 6, 0.75, 0.0)])
def test_equals_the_condensed_srigl_over_successive_updates(fan_in, out, density, gamma):
  rng = np.random.default_rng(fan_in * out)
  k = fan_in_count(density, fan_in)
  mask = np.asarray(fanin_mask(jax.random.PRNGKey(out), (fan_in, out), k))
  budget = k * out
  for fraction in (0.3, 0.5, 0.25, 0.5):
    weights = rng.normal(size=(fan_in, out)).astype(np.float32) * mask
    grads = rng.normal(size=(fan_in, out)).astype(np.float32)
    values, indices, active = _condensed(mask, weights)
    ref = srigl_update(values, indices, jnp.asarray(grads), fraction, active, gamma, budget)
    new = np.asarray(_layer(jnp.asarray(mask), jnp.asarray(weights), jnp.asarray(grads),
                           fraction, jnp.asarray(budget), gamma))
    live = np.asarray(ref.active)
    held = np.zeros((out, fan_in), bool)
    np.put_along_axis(held, np.asarray(ref.indices), True, axis=1)
    np.testing.assert_array_equal(new.T[live], held[live])
    assert not new[:, ~live].any()  # ablated units hold nothing
    counts = new.sum(axis=0)[live]
    assert (counts == counts[0]).all() and counts.sum() <= budget
    if gamma == 0:
      assert live.all() and (counts == k).all()
    mask = new


def test_the_mask_update_reshapes_conv_kernels_and_keeps_the_budget():
  # The written-out layer above as a (2, 1, 2, 2) kernel: fan-in over (kh, kw, c_in).
  shape = (2, 1, 2, 2)
  mask = jnp.asarray([[1, 0], [0, 1], [1, 0], [0, 1]], bool).reshape(shape)
  weights = jnp.asarray([[0.5, 0.0], [0.0, 0.3], [-0.1, 0.0], [0.0, -0.3]]).reshape(shape)
  grads = jnp.asarray([[7.0, 0.4], [0.2, 8.0], [5.0, -0.4], [-0.9, 9.0]]).reshape(shape)
  tree = lambda leaf, bias: {"conv": {"kernel": leaf, "bias": bias}}
  update = ConstantFanInRegrow(tree(True, False), every=10, stop=100, alpha=0.5,
                               schedule="constant")
  masks = tree(mask, jnp.ones(2, bool))
  state = update.init_state(None, masks)
  assert state["budget"].tolist() == [4]
  inputs = UpdateInputs(step=jnp.asarray(10), params=tree(weights, jnp.zeros(2)), masks=masks,
                        dense_grads=tree(grads, jnp.zeros(2)), key=jax.random.PRNGKey(0),
                        loss=lambda w: 0.0)
  new, new_state = update.update(inputs, state)
  np.testing.assert_array_equal(np.asarray(new["conv"]["kernel"]).reshape(4, 2),
                                [[1, 1], [0, 1], [0, 0], [1, 0]])
  assert new["conv"]["bias"] is masks["conv"]["bias"]
  assert new_state["budget"].tolist() == [4]
  assert update.due_steps == tuple(range(10, 100, 10))
