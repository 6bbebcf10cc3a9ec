"""SRigL's neuron ablation: written-out salient counts (layer-wide RigL criterion), which unit
is ablated at a threshold, the budget spread over the remaining units (k' = floor(budget /
active), the remainder kept in the budget), the minimum number of units a fan-in allows,
and constant fan-in among active units over repeated updates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.dynamic.srigl import zero_replaced
from lotto.dynamic.srigl_ablation import fan_in_after_ablation, salient_counts, srigl_update

# 8 inputs, 4 units, k = 3 (budget 12). Unit 3 has tiny weights and a tiny gradient.
VALUES = np.array([[0.9, 0.8, 0.75],
                   [0.7, 0.01, 0.65],
                   [0.6, 0.5, 0.55],
                   [0.02, 0.03, 0.04]], np.float32)
INDICES = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 2, 3]], np.int32)
GRADS = np.full((8, 4), 0.01, np.float32)
GRADS[:, 3] = 0.001
GRADS[7, 0], GRADS[5, 0], GRADS[0, 1], GRADS[1, 1], GRADS[2, 2] = 2.0, 1.0, 3.0, 2.5, 4.0


def test_salient_counts_written_out():
  # n = round(0.34 * 3) = 1. Kept: the 4 * (3 - 1) = 8 largest |V| of the layer: 0.9, 0.8,
  # 0.75 (unit 0), 0.7, 0.65 (unit 1), 0.6, 0.55, 0.5 (unit 2): 3, 2, 3, 0. Grown: the
  # 4 * 1 = 4 largest |G| at positions not held: 4.0 (2, unit 2), 3.0 (0, unit 1),
  # 2.5 (1, unit 1), 2.0 (7, unit 0): 1, 2, 1, 0.
  counts_of = jax.jit(salient_counts)
  counts = counts_of(jnp.asarray(VALUES), jnp.asarray(INDICES), jnp.asarray(GRADS), 1,
                     jnp.ones(4, bool))
  np.testing.assert_array_equal(counts, [4, 4, 4, 0])
  # With unit 0 inactive: 3 * 2 = 6 kept (0.7, 0.65, 0.6, 0.55, 0.5, 0.04) and 3 grown
  # (4.0, 3.0, 2.5) among units 1-3.
  counts = counts_of(jnp.asarray(VALUES), jnp.asarray(INDICES), jnp.asarray(GRADS), 1,
                     jnp.array([False, True, True, True]))
  np.testing.assert_array_equal(counts, [0, 4, 4, 1])


def test_ablation_spreads_the_budget_over_the_remaining_units():
  update = srigl_update(jnp.asarray(VALUES), jnp.asarray(INDICES), jnp.asarray(GRADS), 0.34,
                        gamma=0.3)
  # gamma * k = 0.9: unit 3 (0 salient) is ablated; k' = floor(12 / 3) = 4, remainder 0.
  np.testing.assert_array_equal(update.active, [True, True, True, False])
  # Drop and grow at k = 3 (unit 0: 0.75 @2 -> 7; unit 1: 0.01 @4 -> 0; unit 2: 0.5 @7 -> 2),
  # then one more input each by |G| among inputs neither held nor dropped now: unit 0: 5
  # (1.0); unit 1: 1 (2.5); unit 2: 1 (0.01 ties: the lowest of 1, 3, 4, 5). Unit 3 gets the
  # lowest free input, 0, with value 0.
  np.testing.assert_array_equal(update.indices, [[0, 1, 7, 5], [3, 0, 5, 1], [6, 2, 0, 1],
                                                 [1, 2, 3, 0]])
  np.testing.assert_array_equal(update.values, np.array([[0.9, 0.8, 0, 0], [0.7, 0, 0.65, 0],
                                                         [0.6, 0, 0.55, 0], [0, 0, 0, 0]],
                                                        np.float32))
  np.testing.assert_array_equal(update.replaced, [[0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 0, 1],
                                                  [1, 1, 1, 1]])
  assert int(update.active.sum()) * update.indices.shape[1] == 12  # the budget
  # gamma = 0: no ablation, k stays 3; unit 3 drops 0.02 (input 1) and grows input 0
  # (|G| 0.001 everywhere: the lowest free input).
  plain = srigl_update(jnp.asarray(VALUES), jnp.asarray(INDICES), jnp.asarray(GRADS), 0.34)
  assert plain.indices.shape == (4, 3) and bool(plain.active.all())
  np.testing.assert_array_equal(plain.indices[3], [0, 2, 3])


@pytest.mark.parametrize("budget, units, fan_in, k", [
    (12, 3, 8, 4), (10, 4, 8, 2), (10, 3, 8, 3), (10, 1, 8, 8), (12, 4, 8, 3)])
def test_fan_in_after_ablation(budget, units, fan_in, k):
  # floor(budget / units), at most the fan-in: remainders 0, 2, 1, (capped), 0.
  assert fan_in_after_ablation(budget, units, fan_in) == k


def test_at_least_budget_over_fan_in_units_stay():
  # 4 inputs, k = 3, budget 12: at least ceil(12 / 4) = 3 units. n = 1 (the only free input
  # of each unit). Kept (8 largest |V|): 3, 3, 1, 1; each unit's free input is grown: +1.
  # gamma = 1 (threshold 3) would ablate units 2 and 3 (2 salient each): only unit 3 goes,
  # the tie between them kept for the lower index.
  values = jnp.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.45], [0.4, 0.01, 0.02],
                      [0.03, 0.04, 0.05]])
  indices = jnp.array([[0, 1, 2], [1, 2, 3], [0, 2, 3], [0, 1, 2]], jnp.int32)
  grads = jnp.ones((4, 4))
  update = srigl_update(values, indices, grads, 0.34, gamma=1.0)
  np.testing.assert_array_equal(update.active, [True, True, True, False])
  # k' = min(4, 12 // 3) = 4: every unit holds all 4 inputs; the widening can only regrow
  # the input each unit dropped now (unit 0 dropped 2, unit 1 dropped 3, unit 2 dropped 2).
  np.testing.assert_array_equal(update.indices, [[0, 1, 3, 2], [1, 2, 0, 3], [0, 1, 3, 2],
                                                 [0, 1, 2, 3]])
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    srigl_update(values, indices, grads, 0.3, gamma=1.5)


def test_budget_and_constant_fan_in_over_repeated_updates_with_ablation():
  rng = np.random.default_rng(0)
  fan_in, out, k = 16, 10, 2
  budget = out * k  # 20
  indices = jnp.asarray(np.stack([rng.permutation(fan_in)[:k] for _ in range(out)]), jnp.int32)
  values = jnp.asarray(rng.normal(size=(out, k)), jnp.float32)
  moment = jnp.ones((out, k))
  active = jnp.ones(out, bool)
  seen = []
  for t in range(6):
    # Each round, shrink one more unit's weights and gradient to ~0: it loses its salience.
    faint = np.arange(out) < t
    values = jnp.where(jnp.asarray(faint)[:, None], 1e-6, values)
    grads = rng.normal(size=(fan_in, out)).astype(np.float32)
    grads[:, faint] = 1e-7
    update = srigl_update(values, indices, jnp.asarray(grads), 0.3, active, gamma=0.3,
                          budget=budget)
    units, width = int(update.active.sum()), update.indices.shape[1]
    seen.append((units, width))
    assert not np.any(np.asarray(update.active) & ~np.asarray(active))  # never revived
    assert not np.any(np.asarray(update.active)[faint])  # a faint unit has no salient weight
    assert width == min(fan_in, budget // units)
    assert units * width <= budget < units * (width + 1) or width == fan_in
    rows = np.asarray(update.indices)
    assert all(len(set(r)) == width for r in rows)
    np.testing.assert_array_equal(np.asarray(update.values)[~np.asarray(update.active)], 0)
    moment = zero_replaced(moment, update.replaced)
    assert moment.shape == (out, width)
    np.testing.assert_array_equal(np.asarray(moment)[np.asarray(update.replaced)], 0)
    values = update.values + jnp.asarray(rng.normal(size=update.values.shape), jnp.float32)
    values = jnp.where(update.active[:, None], values, 0.0)
    indices, active = update.indices, update.active
  # Units went (other units than the faint ones may lose their salience too), the layer
  # widened, and some rounds left a remainder of the budget unplaced.
  assert seen[-1][0] < out and seen[-1][1] > k
  assert any(units * width < budget for units, width in seen)
