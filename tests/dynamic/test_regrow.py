"""SET/RigL drop-and-grow: written-out masks for each drop fraction, exact per-layer counts,
the cosine drop schedule, and the update steps."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.schedules import drop_fraction
from lotto.dynamic import drop_and_grow, regrow_steps

# One layer of 8 weights, 5 alive (0, 1, 3, 5, 7).
MASK = np.array([1, 1, 0, 1, 0, 1, 0, 1], bool)
WEIGHTS = np.array([0.5, -0.1, 0.0, 0.3, 0.0, -0.9, 0.0, 0.2], np.float32)
# |dense gradient|: inactive 2: .7, 4: .8, 6: .1; the survivors' own gradients too.
GRADS = np.array([0.0, 0.05, 0.7, 0.0, -0.8, 0.0, 0.1, 0.6], np.float32)


@pytest.mark.parametrize("fraction, dropped, grown, expected", [
    # k = floor(f * 5). Drop the k smallest |w| survivors (|w|: 0.1 @1, 0.2 @7, 0.3 @3, ...),
    # then grow the k largest |g| among the inactive after the drop (the dropped included).
    (0.2, [1], [4], [0, 3, 4, 5, 7]),
    (0.4, [1, 7], [2, 4], [0, 2, 3, 4, 5]),
    (0.6, [1, 3, 7], [2, 4, 7], [0, 2, 4, 5, 7]),  # 7 dropped and regrown: it never left
    (0.1, [], [], [0, 1, 3, 5, 7]),                # floor(0.5) = 0: nothing changes
])
def test_rigl_drops_smallest_magnitude_and_grows_largest_gradient(fraction, dropped, grown,
                                                                   expected):
  new = np.asarray(drop_and_grow(jnp.asarray(MASK), jnp.asarray(WEIGHTS),
                                 jnp.abs(jnp.asarray(GRADS)), jnp.float32(fraction)))
  assert np.flatnonzero(new).tolist() == expected
  assert new.sum() == MASK.sum()  # the layer's count is invariant
  assert sorted(set(np.flatnonzero(MASK)) - set(expected)) == sorted(set(dropped) - set(grown))
  assert sorted(set(expected) - set(np.flatnonzero(MASK))) == sorted(set(grown) - set(dropped))


def test_ties_drop_the_higher_index_and_grow_the_lower_index():
  mask = jnp.asarray([1, 1, 1, 0, 0, 0], bool)
  weights = jnp.asarray([0.2, 0.2, 0.2, 0, 0, 0], jnp.float32)
  scores = jnp.ones(6)  # every inactive position ties
  new = np.asarray(drop_and_grow(mask, weights, scores, jnp.float32(0.34)))  # k = 1
  assert np.flatnonzero(new).tolist() == [0, 1, 2]  # 2 dropped, then 2 regrown (lowest index)
  new = np.asarray(drop_and_grow(mask, weights, scores, jnp.float32(0.67)))  # k = 2
  assert np.flatnonzero(new).tolist() == [0, 1, 2]  # 1, 2 dropped; 1, 2 lowest inactive


def test_cosine_drop_fraction_at_given_steps():
  steps = jnp.asarray([0, 25, 50, 75, 99, 100, 150])
  got = np.asarray(drop_fraction(steps, 0.3, 100, "cosine"))
  want = [0.3, 0.15 * (1 + math.cos(math.pi / 4)), 0.15, 0.15 * (1 - math.cos(math.pi / 4)),
          0.15 * (1 + math.cos(math.pi * 0.99)), 0.0, 0.0]
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(drop_fraction(steps, 0.3, 100, "constant")),
                                np.float32([0.3] * 5 + [0, 0]))


@pytest.mark.parametrize("every, begin, stop, expected", [
    (100, 0, 750, (100, 200, 300, 400, 500, 600, 700)),
    (100, 250, 750, (300, 400, 500, 600, 700)),
    (5, 0, 20, (5, 10, 15)),  # none at step 0, none at or after stop
])
def test_update_steps(every, begin, stop, expected):
  assert regrow_steps(every, begin, stop) == expected
