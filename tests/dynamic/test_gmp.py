"""GMP and DSD mask updates on written-out weights: which weights each update keeps (the
largest |w| among the survivors, per layer or globally, or |w| >= threshold), at the cubic
schedule's exact counts."""
import jax
import jax.numpy as jnp
import numpy as np

from lotto.dynamic.gmp import DenseSparseDense, GradualMagnitude
from lotto.dynamic.update import UpdateInputs

PRUNABLE = {"a": {"bias": False, "kernel": True}, "b": {"kernel": True}}
# Flat positions of a/kernel: 0 .. 7 with |w| .5, .125, .875, .0625, .75, .3125, .25, .8125;
# of b/kernel: 0 .. 3 with |w| .375, .625, .15625, .25 (binary fractions: exact in float32).
PARAMS = {"a": {"bias": jnp.array([9.0, -9.0]),
                "kernel": jnp.array([[0.5, -0.125, 0.875, 0.0625],
                                     [-0.75, 0.3125, -0.25, 0.8125]])},
          "b": {"kernel": jnp.array([[-0.375, 0.625], [0.15625, -0.25]])}}
# a's position 7 is already pruned: it may not come back, however large the |w| it is given.
MASKS = {"a": {"bias": jnp.ones(2, bool),
               "kernel": jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool)},
         "b": {"kernel": jnp.ones((2, 2), bool)}}


def _inputs(step, masks=MASKS):
  return UpdateInputs(step=jnp.asarray(step, jnp.int32), params=PARAMS, masks=masks,
                      dense_grads=jax.tree.map(jnp.zeros_like, PARAMS),
                      key=jax.random.PRNGKey(0), loss=lambda p: jnp.float32(0.0))


def _jitted(method):
  """`update(step, masks=MASKS)`: the masks `method.update` returns (its state from MASKS),
  compiled once per method."""
  state = method.init_state(PARAMS, MASKS)
  compiled = jax.jit(lambda step, masks: method.update(_inputs(step, masks), state)[0])
  return lambda step, masks=MASKS: compiled(step, masks)


def _assert_outranked(masks, layerwise=True):
  """No dropped survivor of the update has a larger |w| than a kept weight (per layer, or
  over both layers)."""
  kept, dropped = [], []
  for name in ("a", "b"):
    before = np.asarray(MASKS[name]["kernel"])
    after = np.asarray(masks[name]["kernel"])
    magnitude = np.abs(np.asarray(PARAMS[name]["kernel"]))
    kept.append(magnitude[after])
    dropped.append(magnitude[before & ~after])
  if layerwise:
    for k, d in zip(kept, dropped):
      assert not d.size or k.min() >= d.max()
  else:
    assert np.concatenate(kept).min() >= np.concatenate(dropped).max()


def _kept(masks):
  return {"a": np.flatnonzero(np.asarray(masks["a"]["kernel"])).tolist(),
          "b": np.flatnonzero(np.asarray(masks["b"]["kernel"])).tolist()}


def _gmp(**kwargs):
  return GradualMagnitude(PRUNABLE, begin=10, end=30, every=5, final_densities=(0.25, 0.5),
                          **kwargs)


def test_layerwise_gmp_keeps_the_largest_magnitudes_at_the_cubic_counts():
  method = _gmp()
  np.testing.assert_array_equal(method.init_state(PARAMS, MASKS)["initial_alive"], [7, 4])
  update = _jitted(method)
  # Step 10 (begin): d = initial, 7/8 and 1: nothing changes.
  assert _kept(update(10)) == {"a": [0, 1, 2, 3, 4, 5, 6], "b": [0, 1, 2, 3]}
  # Step 20: (1 - p)^3 = 1/8. a: d = 0.25 + (7/8 - 0.25) / 8 = 0.328125, keep
  # round(2.625) = 3 of the survivors: |w| .875 @2, .75 @4, .5 @0 (not 7's .8125).
  # b: d = 0.5 + 0.5 / 8 = 0.5625, keep round(2.25) = 2: .625 @1, .375 @0.
  masks = update(20)
  assert _kept(masks) == {"a": [0, 2, 4], "b": [0, 1]}
  _assert_outranked(masks)
  # Step 15: (1 - p)^3 = 27/64, and the schedule starts from a's 7 survivors, not 8:
  # a: d = 0.25 + (7/8 - 0.25) * 27/64 = 0.5137, keep round(4.11) = 4 (from 8/8 it would
  # be round(4.53) = 5); b: d = 0.5 + 0.5 * 27/64 = 0.7109, keep round(2.84) = 3.
  masks = update(15)
  assert _kept(masks) == {"a": [0, 2, 4, 5], "b": [0, 1, 3]}
  _assert_outranked(masks)
  # Step 30 (end), from those masks (the schedule counts from the initial survivors): a
  # keeps round(0.25 * 8) = 2, b round(0.5 * 4) = 2.
  masks = update(30, masks)
  assert _kept(masks) == {"a": [2, 4], "b": [0, 1]}
  np.testing.assert_array_equal(masks["a"]["bias"], [True, True])  # not prunable


def test_global_gmp_ranks_magnitudes_across_layers():
  update = _jitted(_gmp(scope="global"))
  # Global final density (0.25 * 8 + 0.5 * 4) / 12 = 1/3: at step 30, keep 4 of the 11
  # survivors: .875 (a2), .75 (a4), .625 (b1), .5 (a0); b's .375 goes before a's .3125 would.
  masks = update(30)
  assert _kept(masks) == {"a": [0, 2, 4], "b": [1]}
  _assert_outranked(masks, layerwise=False)
  # Step 20: d = 1/3 + (11/12 - 1/3) / 8 = 0.40625, keep round(4.875) = 5: b's .375 joins.
  assert _kept(update(20)) == {"a": [0, 2, 4], "b": [0, 1]}


def test_gmp_by_threshold_drops_the_survivors_below_it():
  masks = _jitted(_gmp(threshold=0.3125))(20)
  # |w| >= 0.3125 among survivors: a .5 @0, .875 @2, .75 @4, .3125 @5 (at the threshold:
  # kept); b .375 @0, .625 @1. a's position 7 stays pruned.
  assert _kept(masks) == {"a": [0, 2, 4, 5], "b": [0, 1]}


def test_dsd_prunes_the_smallest_magnitudes_per_layer_then_restores_every_weight():
  update = _jitted(DenseSparseDense(PRUNABLE, sparse_at=13, dense_at=26, keep_counts=(3, 1)))
  ones = jax.tree.map(jnp.ones_like, MASKS)
  masks = update(13, ones)
  # a: the 3 largest of all 8 |w|: .875 @2, .8125 @7, .75 @4; b: the largest, .625 @1.
  assert _kept(masks) == {"a": [2, 4, 7], "b": [1]}
  dense = update(26, masks)
  for leaf in jax.tree.leaves(dense):
    assert np.asarray(leaf).all()
