"""Scores -> masks: exact counts, ties, monotonicity, open_lth rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core import selection
from lotto.core.errors import ConfigError

SCORES = {"a": {"kernel": jnp.array([[1.0, 2.0], [2.0, 0.0]])},
          "b": {"kernel": jnp.array([[2.0, 2.0, -1.0]]), "bias": jnp.ones(3)}}
PRUNABLE = masks_lib.select_prunable(SCORES)


def test_global_exact_count_with_ties_broken_by_flat_index():
  out = selection.prune_to_density(SCORES, masks_lib.ones_like(SCORES), PRUNABLE, 3 / 7)
  # four scores tie at 2.0; the three with the lowest flat index survive
  np.testing.assert_array_equal(out["a"]["kernel"], [[False, True], [True, False]])
  np.testing.assert_array_equal(out["b"]["kernel"], [[True, False, False]])
  assert bool(out["b"]["bias"].all())


def test_layerwise_exact_counts():
  out = selection.prune_to_density(SCORES, masks_lib.ones_like(SCORES), PRUNABLE, 0.5,
                                    scope="layerwise")
  assert int(out["a"]["kernel"].sum()) == 2 and int(out["b"]["kernel"].sum()) == 2
  per_layer = selection.prune_to_density(SCORES, masks_lib.ones_like(SCORES), PRUNABLE,
                                         {"a/kernel": 0.25, "b/kernel": 1.0})
  assert int(per_layer["a"]["kernel"].sum()) == 1 and bool(per_layer["b"]["kernel"].all())


@pytest.mark.parametrize("density", [0.5, 0.1, 0.013, 0.001])
def test_exact_counts_on_random_scores_with_many_ties(density):
  key = jax.random.PRNGKey(0)
  scores = {"x": {"kernel": jnp.round(jax.random.normal(key, (300, 100)), 1)},
            "y": {"kernel": jnp.zeros((100, 10))}}  # all tied at zero
  prunable = masks_lib.select_prunable(scores)
  out = selection.prune_to_density(scores, masks_lib.ones_like(scores), prunable, density)
  assert masks_lib.count(out, prunable)[0] == round(density * 31000)
  layer = selection.prune_to_density(scores, masks_lib.ones_like(scores), prunable, density,
                                     scope="layerwise")
  assert int(layer["x"]["kernel"].sum()) == round(density * 30000)
  assert int(layer["y"]["kernel"].sum()) == round(density * 1000)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [1, 2, 97, 2500, 4999, 5000, 9000])
def test_top_k_mask_matches_a_stable_sort_oracle(dtype, k):
  # negatives, +-0.0, heavy ties, huge and tiny magnitudes, a candidate subset
  rng = np.random.default_rng(k)
  values = np.round(rng.standard_normal(10000), 1) * 10.0 ** rng.integers(-30, 30, 10000)
  values[rng.random(10000) < 0.2] = 0.0
  values[rng.random(10000) < 0.05] = -0.0
  cand = rng.random(10000) < 0.5
  values = values.astype(dtype)
  with jax.enable_x64(dtype == "float64"):
    kept = np.asarray(selection.top_k_mask(jnp.asarray(values), jnp.asarray(cand),
                                           jnp.asarray(k)))
  order = [i for i in np.lexsort((np.arange(10000), -(values + 0.0))) if cand[i]]
  expected = np.zeros(10000, bool)
  expected[order[:k]] = True  # highest first, ties by lower flat index
  np.testing.assert_array_equal(kept, expected)


@pytest.mark.parametrize("k", [1, 40, 41, 42, 45, 60, 61, 2500])
def test_float64_keys_that_share_their_top_32_bits(k):
  # Float64 scores that only the low 32 bits of their keys tell apart (the last two radix
  # passes): a cluster of 21 scores within 2e-11 of 1.0 (k = 41 .. 61 land inside it);
  # the rest are continuous (and zeros) below it.
  rng = np.random.default_rng(k)
  values = 0.9 * rng.random(5000) * 10.0 ** -rng.integers(0, 30, 5000)  # below the cluster
  values[rng.random(5000) < 0.3] = 0.0
  values[:40] = 2.0 + rng.random(40)  # the 40 highest
  values[100:121] = 1.0 + np.arange(21)[::-1] * 1e-12  # ranks 41 .. 61, top 32 bits equal
  cand = np.ones(5000, bool)
  with jax.enable_x64(True):
    kept = np.asarray(selection.top_k_mask(jnp.asarray(values, jnp.float64), jnp.asarray(cand),
                                           jnp.asarray(k)))
  order = np.lexsort((np.arange(5000), -values))
  expected = np.zeros(5000, bool)
  expected[order[:k]] = True
  np.testing.assert_array_equal(kept, expected)
  if 41 <= k <= 61:  # the cluster is kept from its highest score down
    assert kept[100:121].sum() == k - 40 and kept[100:100 + k - 40].all()


def test_selection_keeps_the_highest_scores():
  scores = jax.random.normal(jax.random.PRNGKey(1), (1000,))
  kept = selection.top_k_mask(scores, jnp.ones(1000, bool), 137)
  order = np.argsort(-np.asarray(scores), kind="stable")
  np.testing.assert_array_equal(np.flatnonzero(kept), np.sort(order[:137]))
  # float64 keys order the same way, including negatives and zeros
  with jax.enable_x64(True):
    s64 = jnp.array([-3.0, -0.0, 0.0, 1e-300, -1e-300, 5.0], jnp.float64)
    kept = selection.top_k_mask(s64, jnp.ones(6, bool), 2)
    np.testing.assert_array_equal(kept, [False, False, False, True, False, True])


def test_monotone_only_survivors_are_candidates():
  scores = {"w": {"kernel": jnp.arange(10.0).reshape(2, 5)}}
  prunable = masks_lib.select_prunable(scores)
  old = {"w": {"kernel": jnp.array([[True] * 5, [False] * 5])}}  # best scores already pruned
  new = selection.prune_to_density(scores, old, prunable, 0.3)
  assert int(new["w"]["kernel"].sum()) == 3
  assert not bool(jnp.any(new["w"]["kernel"] & ~old["w"]["kernel"]))
  np.testing.assert_array_equal(new["w"]["kernel"][0], [False, False, True, True, True])


def test_open_lth_counts_prune_one_more_of_the_survivors():
  scores = {"w": {"kernel": jax.random.normal(jax.random.PRNGKey(2), (10, 10))}}
  prunable = masks_lib.select_prunable(scores)
  ones = masks_lib.ones_like(scores)
  plain = selection.prune_to_density(scores, ones, prunable, 0.8)
  compat = selection.prune_fraction_open_lth(scores, ones, prunable, 0.2)
  assert int(plain["w"]["kernel"].sum()) == 80
  assert int(compat["w"]["kernel"].sum()) == 100 - (20 + 1)  # ceil(0.2 * 100) + 1 pruned
  again = selection.prune_fraction_open_lth(scores, compat, prunable, 0.2)
  assert int(again["w"]["kernel"].sum()) == 79 - (16 + 1)  # of the 79 survivors, recursively
  assert not np.any(np.asarray(again["w"]["kernel"]) & ~np.asarray(compat["w"]["kernel"]))


def test_bad_arguments():
  ones = masks_lib.ones_like(SCORES)
  with pytest.raises(ConfigError, match="global, layerwise"):
    selection.prune_to_density(SCORES, ones, PRUNABLE, 0.5, scope="local")
  for density in (0.0, 1.5, -0.1):
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
      selection.prune_to_density(SCORES, ones, PRUNABLE, density)


def test_layer_sum_normalization_lets_small_score_layers_compete():
  scores = {"a": {"kernel": jnp.full((10,), 100.0) + jnp.arange(10.0)},
            "b": {"kernel": jnp.arange(10.0) / 100.0}}
  masks = {k: {"kernel": jnp.ones((10,), bool)} for k in scores}
  prunable = {k: {"kernel": True} for k in scores}
  raw = selection.prune_to_density(scores, masks, prunable, 0.5)
  assert int(raw["a"]["kernel"].sum()) == 10 and int(raw["b"]["kernel"].sum()) == 0
  normalized = selection.prune_to_density(scores, masks, prunable, 0.5,
                                          normalization="layer_sum")
  # Divided by their layer sums (1045 and 0.45), b's scores are i / 45 and a's (100 + i) / 1045
  # (0.0957..0.1043): the top 10 are b's i = 5..9 (0.111..0.2) and a's i = 5..9 (0.1005..0.1043).
  top_half = [False] * 5 + [True] * 5
  np.testing.assert_array_equal(normalized["a"]["kernel"], top_half)
  np.testing.assert_array_equal(normalized["b"]["kernel"], top_half)
