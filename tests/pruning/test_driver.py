"""Pruning drivers: schedules over rounds, monotone masks, inversion, both loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto import pruning
from lotto.core import masks as masks_lib
from lotto.core import schedules
from lotto.core.errors import ConfigError
from lotto.core.scores import ScoringContext


def test_exponential_and_linear_schedules_round_by_round(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  total = 266_200
  # Written out: 4 exponential rounds to 5 % keep 0.05 ** (k / 4) of the weights after round
  # k (47.29 %, 22.36 %, 10.57 %, 5 %); 4 linear rounds to 4 % keep 76, 52, 28, 4 %.
  exponential = [0.4728708045015879, 0.22360679774997896, 0.10573712634405642, 0.05]
  linear = [0.76, 0.52, 0.28, 0.04]
  np.testing.assert_allclose(schedules.density_schedule(0.05, 4), exponential, rtol=1e-12)
  np.testing.assert_allclose(schedules.density_schedule(0.04, 4, "linear"), linear, rtol=1e-12)
  # Survivors after each round: round(d_k * 266,200).
  for kind, final, expected in (("exponential", 0.05, [125_878, 59_524, 28_147, 13_310]),
                                ("linear", 0.04, [202_312, 138_424, 74_536, 10_648])):
    masks, counts = pruning.prune("synflow", ctx, params, masks_lib.ones_like(params), prunable,
                                  final, jax.random.PRNGKey(0), iterations=4, schedule=kind,
                                  with_round_counts=True)
    assert counts.shape == (4, 3)  # 4 rounds x 3 prunable layers
    assert counts.sum(axis=1).tolist() == expected
    assert masks_lib.count(masks, prunable) == (expected[-1], total)
    assert counts[-1].tolist() == [int(np.asarray(masks[n]["kernel"]).sum())
                                   for n in ("hidden_0", "hidden_1", "output")]


def test_iterative_masks_are_monotone(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  previous = masks_lib.ones_like(params)
  for d in (0.5, 0.2, 0.05):
    masks = pruning.prune("synflow", ctx, params, previous, prunable, d, jax.random.PRNGKey(0),
                          iterations=3)
    for new, old in zip(jax.tree.leaves(masks), jax.tree.leaves(previous)):
      assert not bool(jnp.any(new & ~old))
    assert masks_lib.count(masks, prunable)[0] == round(d * 266_200)
    previous = masks


def test_inverted_selection_is_the_complement_of_the_kept_one(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  ones = masks_lib.ones_like(params)
  kept = pruning.prune("magnitude", ctx, params, ones, prunable, 0.9, jax.random.PRNGKey(0))
  inverted = pruning.prune("magnitude", ctx, params, ones, prunable, 0.1, jax.random.PRNGKey(0),
                           invert=True)
  # Keeping the lowest 10 % of |w| (global) leaves out exactly the highest 90 %: on every
  # prunable layer the inverted mask is the complement of the kept one (|w| has no ties).
  assert masks_lib.count(inverted, prunable) == (26_620, 266_200)
  for name in ("hidden_0", "hidden_1", "output"):
    np.testing.assert_array_equal(np.asarray(inverted[name]["kernel"]),
                                  ~np.asarray(kept[name]["kernel"]))
    assert bool(jnp.all(inverted[name]["bias"]))  # never pruned
  w = np.abs(np.asarray(params["hidden_0"]["kernel"]))
  assert w[np.asarray(inverted["hidden_0"]["kernel"])].max() < w[np.asarray(
      kept["hidden_0"]["kernel"])].min()


def test_dispatched_rounds_give_the_same_masks_as_the_compiled_loop(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  run = lambda loop: pruning.prune("synflow", ctx, params, masks_lib.ones_like(params),  # noqa
                                   prunable, 0.01, jax.random.PRNGKey(0), iterations=5, loop=loop)
  for a, b in zip(jax.tree.leaves(run("fori")), jax.tree.leaves(run("dispatch"))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(ConfigError, match="unknown pruning loop 'while'; valid choices: auto, fori"):
    run("while")


def test_synaptic_flow_count_rule(lenet):
  model, params, prunable = lenet
  ctx = ScoringContext(model.apply, (28, 28, 1))
  # Synaptic-Flow keeps n - int((1 - d_k) n) per round: one more than round(d_k n) here in
  # rounds 1-3 (125,878 / 59,524 / 28,147 with the default rule).
  assert pruning.round_counts([0.4728708045015879, 0.22360679774997896, 0.10573712634405642,
                               0.05], 266_200, "synaptic_flow") == [125_879, 59_525, 28_148,
                                                                    13_310]
  _, counts = pruning.prune("magnitude", ctx, params, masks_lib.ones_like(params), prunable,
                            0.05, jax.random.PRNGKey(0), iterations=4, count_rule="synaptic_flow",
                            with_round_counts=True)
  assert counts.sum(axis=1).tolist() == [125_879, 59_525, 28_148, 13_310]
  with pytest.raises(ConfigError, match="unknown prune.count_rule 'floor'; valid choices: round"):
    pruning.round_counts([0.5], 10, "floor")
