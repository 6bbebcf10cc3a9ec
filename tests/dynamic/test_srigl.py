"""SRigL on condensed layers: written-out per-unit drop and grow (magnitude ties to the higher
input, gradient ties to the lower, a dropped input never regrown in its own update, halves
of round() to even), an independent per-unit implementation on random tied data, the
constant fan-in invariant over repeated updates, and moment zeroing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.dynamic.srigl import drop_and_grow_units, drop_count, zero_replaced

# One layer: 6 inputs, 2 units, k = 3. Unit 1's row is not sorted by input.
VALUES = np.array([[0.5, -0.1, 0.3],
                   [0.2, -0.2, 0.9]], np.float32)
INDICES = np.array([[0, 2, 4],
                    [5, 1, 3]], np.int32)
# Dense gradient G[in, out]. Unit 0 holds 0, 2, 4 (large |G|: never candidates); of the
# others |G| = 0.4 @1, 0.7 @3, 0.7 @5 (a tie: 3 first). Unit 1 holds 5, 1, 3; of the
# others 0.1 @0, 0.6 @2, 0.6 @4 (a tie: 2 first).
GRADS = np.array([[9.0, 0.1],
                  [0.4, 8.0],
                  [5.0, -0.6],
                  [-0.7, 7.0],
                  [3.0, 0.6],
                  [0.7, 0.05]], np.float32)


@pytest.mark.parametrize("fraction, indices, values, replaced", [
    # n = round(0.3 * 3) = 1. Unit 0 drops -0.1 (input 2, whose |G| = 5 is the largest of
    # the inputs it no longer holds: not regrown now) and grows 3. Unit 1: |V| 0.2 ties
    # between input 5 (slot 0) and input 1 (slot 1): the higher input, 5, goes; grows 2.
    (0.3, [[0, 3, 4], [2, 1, 3]], [[0.5, 0, 0.3], [0, -0.2, 0.9]],
     [[0, 1, 0], [1, 0, 0]]),
    # n = round(1.5) = 2 (half to even). Unit 0 drops slots 1, 2 (|V| 0.1, 0.3) and writes
    # 3, 5 into them in that order; unit 1 drops slots 0, 1 and writes 2, 4.
    (0.5, [[0, 3, 5], [2, 4, 3]], [[0.5, 0, 0], [0, 0, 0.9]], [[0, 1, 1], [1, 1, 0]]),
    # n = round(0.75) = 1, the same as 0.3.
    (0.25, [[0, 3, 4], [2, 1, 3]], [[0.5, 0, 0.3], [0, -0.2, 0.9]],
     [[0, 1, 0], [1, 0, 0]]),
    # n = round(0.3) = 0: nothing changes.
    (0.1, INDICES.tolist(), VALUES.tolist(), [[0, 0, 0], [0, 0, 0]]),
    # n = 3 = fan_in - k: every slot is replaced by the 3 inputs not held, best first
    # (slot 0 gets the largest |G|).
    (1.0, [[3, 5, 1], [2, 4, 0]], [[0, 0, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1]]),
])
def test_per_unit_drop_and_grow_written_out(fraction, indices, values, replaced):
  update = jax.jit(drop_and_grow_units)(jnp.asarray(VALUES), jnp.asarray(INDICES),
                                        jnp.asarray(GRADS), jnp.float32(fraction))
  np.testing.assert_array_equal(update.indices, indices)
  np.testing.assert_allclose(update.values, np.asarray(values, np.float32), rtol=0, atol=0)
  np.testing.assert_array_equal(update.replaced, np.asarray(replaced, bool))
  assert update.indices.dtype == jnp.int32


def test_drop_count_rounds_half_to_even_and_fits_the_fan_in():
  assert [int(drop_count(f, 4, 100)) for f in (0.125, 0.375, 0.3, 0.0, 1.0)] == [0, 2, 1, 0, 4]
  assert int(drop_count(0.9, 8, 10)) == 2  # round(7.2) = 7, but only 10 - 8 inputs are free
  assert int(drop_count(0.5, 5, 5)) == 0   # a dense unit cannot grow anything


def test_inactive_units_are_left_alone():
  update = drop_and_grow_units(jnp.asarray(VALUES), jnp.asarray(INDICES), jnp.asarray(GRADS),
                               0.5, jnp.array([True, False]))
  np.testing.assert_array_equal(update.indices, [[0, 3, 5], INDICES[1]])
  np.testing.assert_array_equal(update.replaced[1], [False] * 3)


def _reference(values, indices, grads, fraction):
  """Per unit, with Python sorting on explicit keys: drop the n smallest (|v|, -input), grow
  the n largest (|g|, -input) among inputs not held before, into the dropped slots in
  ascending slot order."""
  out, k = indices.shape
  fan_in = grads.shape[0]
  n = min(int(np.round(np.float32(fraction) * np.float32(k))), k, fan_in - k)
  new_v, new_i, replaced = values.copy(), indices.copy(), np.zeros((out, k), bool)
  for o in range(out):
    slots = sorted(range(k), key=lambda j: (abs(values[o, j]), -indices[o, j]))[:n]
    free = [i for i in range(fan_in) if i not in set(indices[o])]
    grown = sorted(free, key=lambda i: (-abs(grads[i, o]), i))[:n]
    for slot, i in zip(sorted(slots), grown):
      new_i[o, slot], new_v[o, slot], replaced[o, slot] = i, 0.0, True
  return new_v, new_i, replaced


def test_equals_an_independent_per_unit_implementation_on_tied_random_data():
  rng = np.random.default_rng(0)
  step = jax.jit(drop_and_grow_units)
  for trial in range(12):
    fan_in, out, k = 9, 7, 1 + trial % 5
    indices = np.stack([rng.permutation(fan_in)[:k] for _ in range(out)]).astype(np.int32)
    values = rng.integers(-3, 4, size=(out, k)).astype(np.float32) / 4  # many |v| ties
    grads = rng.integers(-2, 3, size=(fan_in, out)).astype(np.float32)  # many |g| ties
    fraction = [0.2, 0.5, 0.9][trial % 3]
    update = step(jnp.asarray(values), jnp.asarray(indices), jnp.asarray(grads), fraction)
    want_v, want_i, want_r = _reference(values, indices, grads, fraction)
    np.testing.assert_array_equal(update.indices, want_i)
    np.testing.assert_array_equal(update.values, want_v)
    np.testing.assert_array_equal(update.replaced, want_r)


def test_constant_fan_in_survives_repeated_updates():
  rng = np.random.default_rng(1)
  fan_in, out, k = 20, 12, 5
  indices = jnp.asarray(np.stack([rng.permutation(fan_in)[:k] for _ in range(out)]), jnp.int32)
  values = jnp.asarray(rng.normal(size=(out, k)), jnp.float32)
  step = jax.jit(drop_and_grow_units)
  for t in range(30):
    grads = jnp.asarray(rng.normal(size=(fan_in, out)), jnp.float32)
    fraction = 0.3 / 2 * (1 + np.cos(np.pi * t / 30))  # RigL's cosine schedule
    before = np.asarray(indices)
    update = step(values, indices, grads, fraction)
    after = np.asarray(update.indices)
    n = int(np.round(np.float32(fraction) * k))
    for o in range(out):
      assert len(set(after[o])) == k and after[o].min() >= 0 and after[o].max() < fan_in
      assert len(set(after[o]) - set(before[o])) == n  # n new inputs, all in replaced slots
      assert int(update.replaced[o].sum()) == n
    kept = ~np.asarray(update.replaced)
    np.testing.assert_array_equal(after[kept], before[kept])
    np.testing.assert_array_equal(np.asarray(update.values)[kept], np.asarray(values)[kept])
    np.testing.assert_array_equal(np.asarray(update.values)[~kept], 0)
    values = update.values + jnp.asarray(rng.normal(size=(out, k)) * 0.1, jnp.float32)
    indices = update.indices


def test_zero_replaced_moments_and_widening():
  moment = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
  replaced = jnp.array([[False, True, False], [True, False, False]])
  np.testing.assert_array_equal(zero_replaced(moment, replaced), [[1, 0, 3], [0, 5, 6]])
  wide = jnp.array([[False, False, False, True], [False, True, False, True]])
  np.testing.assert_array_equal(zero_replaced(moment, wide), [[1, 2, 3, 0], [4, 0, 6, 0]])
