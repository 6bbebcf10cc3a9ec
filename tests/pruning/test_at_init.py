"""Pruning at init: schedules over rounds, monotone masks, inversion, count rules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lotto import pruning
from lotto.core import masks as masks_lib
from lotto.core import schedules
from lotto.core.errors import ConfigError
from lotto.core.scores import ScoringContext, make_scorer
from lotto.models import create_model, init_variables


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




def _torch_like_init(model, shape, seed=0, gain=1.0):
  """Params of `model` drawn in numpy (eager init compiles every layer: seconds per model):
  kernels N(0, 2 / fan_in) times `gain`, biases U(+-1 / sqrt(fan_in)) as lotto's "torch"."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), shape)[0])

  def draw(layer):
    fan_in = int(np.prod(layer["kernel"].shape[:-1]))
    return {"kernel": (gain * np.sqrt(2 / fan_in) * rng.standard_normal(
                layer["kernel"].shape)).astype(np.float32),
            "bias": rng.uniform(-1, 1, layer["bias"].shape).astype(np.float32) / np.sqrt(fan_in)}

  return {name: draw(layer) for name, layer in shapes.items()}


def _synflow_masks(model, params, shape, density, dtype, iterations):
  ctx = ScoringContext(model.apply, shape, synflow_dtype=dtype)
  return pruning.prune("synflow", ctx, params, masks_lib.ones_like(params),
                       masks_lib.select_prunable(params), density, jax.random.PRNGKey(0),
                       iterations=iterations)


@pytest.mark.parametrize("name", ["lenet300", "lenet5"])
def test_float32_rescaled_synflow_gives_the_float64_masks(name, lenet):
  # Float32, rescaled each round, keeps float64's masks on these nets at compressions 1-4
  # (densities 1e-1 .. 1e-4), 10 rounds each (and 100: BUILD_NOTES.md; not on VGG-16).
  model = lenet[0] if name == "lenet300" else create_model(name, 10)
  params = lenet[1] if name == "lenet300" else _torch_like_init(model, (28, 28, 1))
  for compression in (1, 2, 3, 4):
    rescaled, exact = (_synflow_masks(model, params, (28, 28, 1), 10.0 ** -compression, dtype, 10)
                       for dtype in ("float32_rescaled", "float64"))
    for a, b in zip(jax.tree.leaves(rescaled), jax.tree.leaves(exact)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=str(compression))


@pytest.mark.parametrize("gain", [3000.0, 1e-5])
def test_plain_float32_synflow_leaves_range_on_a_deep_net_where_rescaled_does_not(gain):
  # 12 hidden layers of 8 units, kernels times `gain`: R is 3e52 (gain 3000) or 2e-58
  # (gain 1e-5), beyond float32. Plain float32 scores overflow to inf (or underflow to 0);
  # rescaled float32 scores stay finite and nonzero and rank the weights as float64 does.
  model = create_model("mlp", 10, widths=(8,) * 12)
  params = _torch_like_init(model, (4,), gain=gain)
  params = jax.tree.map(lambda p: p * (p.ndim > 1), params)  # zero biases: R scales as gain**13
  ones = masks_lib.ones_like(params)
  scores = {dtype: make_scorer("synflow", ScoringContext(model.apply, (4,), synflow_dtype=dtype))(
      params, ones, {}, None, None) for dtype in ("float32", "float32_rescaled", "float64")}
  kernels = {dtype: np.concatenate([np.asarray(s["kernel"], np.float64).ravel()
                                    for s in tree.values()]) for dtype, tree in scores.items()}
  plain = kernels["float32"]
  assert (not np.all(np.isfinite(plain))) if gain > 1 else not np.any(plain), plain.max()
  rescaled = kernels["float32_rescaled"]
  assert np.all(np.isfinite(rescaled)) and np.all(rescaled > 0)
  # The 5 % kept by a global selection (a stable sort: ties by index, as lotto's).
  keep = lambda s: np.argsort(-s, kind="stable")[:len(s) // 20]  # noqa: E731
  np.testing.assert_array_equal(keep(rescaled), keep(kernels["float64"]))
  assert not np.array_equal(keep(plain), keep(kernels["float64"]))
