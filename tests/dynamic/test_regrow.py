"""SET/RigL drop-and-grow: written-out masks for each drop fraction, exact per-layer counts,
which positions each method grows (RigL: largest |gradient|; SET: uniformly random, blind to
the gradient), the cosine drop schedule, and the update steps."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core.schedules import drop_fraction
from lotto.dynamic import DropAndGrow, UpdateInputs, drop_and_grow, regrow_steps

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


@functools.partial(jax.jit, static_argnums=0)
def _method_update(growth, mask, weights, grads, keys):
  """DropAndGrow(growth).update at step 5, drop fraction 0.4 (k = floor(0.4 * 5) = 2), on a
  layer holding MASK / WEIGHTS / `grads` beside a non-prunable bias: one mask per key, and
  whether every bias stayed alive."""
  method = DropAndGrow({"layer": {"bias": False, "kernel": True}}, every=5, stop=100,
                       alpha=0.4, schedule="constant", growth=growth)
  params = {"layer": {"bias": jnp.zeros(3), "kernel": weights.reshape(2, 4)}}
  masks = {"layer": {"bias": jnp.ones(3, bool), "kernel": mask.reshape(2, 4)}}
  dense_grads = {"layer": {"bias": jnp.ones(3), "kernel": grads.reshape(2, 4)}}

  def one(key):
    inputs = UpdateInputs(step=jnp.asarray(5, jnp.int32), params=params, masks=masks,
                          dense_grads=dense_grads, key=key, loss=lambda p: 0.0)
    new, _ = method.update(inputs, {})
    return new["layer"]["kernel"].ravel(), new["layer"]["bias"].all()

  return jax.vmap(one)(keys)


def _grown_masks(growth, grads):
  # Arrays passed in, not closed over: XLA would spend seconds constant-folding the selection.
  kernels, biases = _method_update(growth, jnp.asarray(MASK), jnp.asarray(WEIGHTS),
                                   jnp.asarray(grads), KEYS)
  assert np.asarray(biases).all()  # the bias is not prunable
  return np.asarray(kernels)


KEYS = jax.random.split(jax.random.PRNGKey(0), 50)


def test_rigl_update_grows_where_the_gradient_is_largest_in_magnitude():
  # Drop 1 and 7 (|w| .1, .2); inactive then: 1, 2, 4, 6, 7 with |g| .05, .7, .8, .1, .6.
  # RigL grows 4 and 2, whatever the key: 4 by |g| (its g is -.8; by signed g, 2 and 7).
  for mask in _grown_masks("gradient", GRADS):
    assert np.flatnonzero(mask).tolist() == [0, 2, 3, 4, 5]


def test_set_update_grows_uniformly_at_random_whatever_the_gradient():
  # SET drops as RigL does (1 and 7 leave: the survivors 0, 3, 5 stay) and grows 2 of the 5
  # inactive positions 1, 2, 4, 6, 7 uniformly at random from the update's key.
  masks = _grown_masks("random", GRADS)
  assert (masks.sum(axis=1) == 5).all()
  assert masks[:, [0, 3, 5]].all()
  grown = masks[:, [1, 2, 4, 6, 7]]
  assert (grown.sum(axis=1) == 2).all()
  # Each inactive position is grown with probability 2/5: 20 of 50 keys expected (binomial
  # standard deviation 3.5), positions 1 and 6 (the smallest |g|) included; RigL's pair
  # {2, 4} is the choice of about 1 key in 10, not of every key.
  counts = grown.sum(axis=0)
  assert ((counts >= 8) & (counts <= 32)).all(), counts
  rigl_choice = masks[:, 2] & masks[:, 4]
  assert rigl_choice.sum() <= 15, rigl_choice.sum()
  # Blind to the gradient: the same keys with other gradients grow the same positions.
  np.testing.assert_array_equal(masks, _grown_masks("random", GRADS[::-1] * 3.0))


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
