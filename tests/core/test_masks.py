"""Masks: prunable selection, apply/count/density, reports, random masks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto.core import masks as masks_lib
from lotto.core.errors import ConfigError

PARAMS = {
    "hidden_0": {"kernel": jnp.arange(12.0).reshape(3, 4) + 1, "bias": jnp.ones(4)},
    "output": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
}


def test_default_prunable_is_every_kernel():
  prunable = masks_lib.select_prunable(PARAMS)
  assert prunable == {"hidden_0": {"kernel": True, "bias": False},
                      "output": {"kernel": True, "bias": False}}


def test_exclude_output_and_include_regex():
  assert masks_lib.select_prunable(PARAMS, exclude="^output/")["output"]["kernel"] is False
  chosen = masks_lib.select_prunable(PARAMS, include="bias$")
  assert chosen["hidden_0"]["bias"] is True and chosen["hidden_0"]["kernel"] is False


def test_bad_regex_and_empty_selection_are_errors():
  with pytest.raises(ConfigError, match="regex"):
    masks_lib.select_prunable(PARAMS, include="(")
  with pytest.raises(ConfigError, match="no prunable layers"):
    masks_lib.select_prunable(PARAMS, include="nothing_matches")


def test_mask_has_params_treedef_and_bool_leaves():
  masks = masks_lib.ones_like(PARAMS)
  assert jax.tree.structure(masks) == jax.tree.structure(PARAMS)
  assert all(m.dtype == jnp.bool_ and m.all() for m in jax.tree.leaves(masks))


def test_apply_count_density_and_report():
  prunable = masks_lib.select_prunable(PARAMS)
  masks = masks_lib.ones_like(PARAMS)
  masks["hidden_0"]["kernel"] = jnp.array([[True, False, False, False]] * 3)
  masks["output"]["kernel"] = jnp.zeros((4, 2), bool)
  applied = masks_lib.apply(PARAMS, masks)
  np.testing.assert_array_equal(applied["hidden_0"]["kernel"][:, 1:], 0)
  np.testing.assert_array_equal(applied["hidden_0"]["kernel"][:, 0], [1, 5, 9])
  np.testing.assert_array_equal(applied["hidden_0"]["bias"], 1)  # not prunable: untouched
  assert masks_lib.count(masks, prunable) == (3, 20)
  assert masks_lib.density(masks, prunable) == pytest.approx(0.15)
  assert masks_lib.layer_densities(masks, prunable) == {"hidden_0/kernel": 0.25,
                                                        "output/kernel": 0.0}
  rows = masks_lib.layer_report(masks, prunable)
  assert [r["collapsed"] for r in rows] == [False, True]
  text = masks_lib.format_layer_report(rows)
  assert "COLLAPSED" in text and "15.00%" in text


@pytest.mark.parametrize("density", [0.5, 0.1, 1.0])
def test_random_masks_have_exact_per_layer_counts(density):
  params = {"a": {"kernel": jnp.zeros((30, 20))}, "b": {"kernel": jnp.zeros((20, 7)),
                                                        "bias": jnp.zeros(7)}}
  prunable = masks_lib.select_prunable(params)
  masks = masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable, density)
  assert int(masks["a"]["kernel"].sum()) == round(density * 600)
  assert int(masks["b"]["kernel"].sum()) == round(density * 140)
  assert bool(masks["b"]["bias"].all())


def test_random_masks_per_layer_map_and_errors():
  params = {"a": {"kernel": jnp.zeros((10, 10))}, "b": {"kernel": jnp.zeros((10, 10))}}
  prunable = masks_lib.select_prunable(params)
  masks = masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable,
                                 {"a/kernel": 0.3, "b/kernel": 0.9})
  assert (int(masks["a"]["kernel"].sum()), int(masks["b"]["kernel"].sum())) == (30, 90)
  other = masks_lib.random_masks(jax.random.PRNGKey(1), params, prunable,
                                 {"a/kernel": 0.3, "b/kernel": 0.9})
  assert bool(jnp.any(other["a"]["kernel"] != masks["a"]["kernel"]))
  with pytest.raises(ConfigError, match=r"\(0, 1\]"):
    masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable, 1.5)
  with pytest.raises(ConfigError, match="no density given"):
    masks_lib.random_masks(jax.random.PRNGKey(0), params, prunable, {"a/kernel": 0.5})
